"""Primary keys handed out before the INSERT, so a batch's rows can be flushed together.

The writer needs a new ticket's and message's id at once (the log line, the
`[#ID]` of the auto-reply, events, the batch's own lookups). Asking the database
for it means flushing each message on its own, and the ORM's flush was a third
of ingest's time. `IdAllocator` gives the ids out first instead:

- PostgreSQL: `nextval()` of the column's own sequence, so other writers (a second
  `maild run`) can never be handed the same one. Ticket numbers, which people see,
  are taken one at a time: no more gaps than a rolled-back INSERT would leave.
  Message and customer ids, which nobody sees, are taken `BLOCK` at a time (one
  round trip instead of one per row: a history import writes thousands a minute);
  the ones a transaction does not use are skipped, as a rolled-back INSERT's are.
- SQLite: one more than the table's largest id, read once per table under the
  transaction's write lock (BEGIN IMMEDIATE, taken here if not yet held), then
  counted up. That is the number SQLite itself would pick (the tables are not
  AUTOINCREMENT), and no other connection can insert while the lock is held.

Every row of these tables that a session adds while it holds an allocator must
take its id from it (on SQLite, one inserted without would collide). It must not
be kept across transactions. It runs no ORM query, so it never autoflushes.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

TABLES = frozenset({"tickets", "messages", "customers"})
BLOCK = 64  # PostgreSQL: message and customer ids fetched per round trip
IN_BLOCKS = frozenset({"messages", "customers"})  # not tickets: their numbers are seen


class IdAllocator:
    """The next primary key of `tickets`, `messages` or `customers` in one transaction."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._last: dict[str, int] = {}  # SQLite: the last id handed out, per table
        self._sequence: dict[str, str] = {}  # PostgreSQL: the sequence, per table
        self._block: dict[str, list[int]] = {}  # PostgreSQL: ids fetched, not handed out

    def next(self, table: str) -> int:
        if table not in TABLES:
            raise ValueError(f"no id allocation for table {table!r}")
        conn = self.session.connection()
        if conn.dialect.name == "postgresql":
            return self._nextval(table)
        if table not in self._last:
            dbapi = conn.connection.dbapi_connection
            if dbapi is not None and not dbapi.in_transaction:
                conn.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock, before max()
            self._last[table] = conn.exec_driver_sql(
                f"SELECT coalesce(max(id), 0) FROM {table}").scalar_one()
        self._last[table] += 1
        return self._last[table]

    def rolled_back(self) -> None:
        """A savepoint with rows of ours was rolled back: on SQLite, read the largest ids
        again, so the next rows take the numbers the rolled-back ones had (as SQLite
        would). Only after a flush of everything still pending (a savepoint's release)."""
        self._last.clear()

    def _nextval(self, table: str) -> int:
        conn = self.session.connection()
        if table not in self._sequence:
            self._sequence[table] = conn.execute(
                text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": table}).scalar_one()
        if table not in IN_BLOCKS:
            return int(conn.execute(text("SELECT nextval(:s)"),
                                    {"s": self._sequence[table]}).scalar_one())
        block = self._block.setdefault(table, [])
        if not block:  # ascending, handed out from the end: reversed
            block[:] = sorted((int(n) for n in conn.execute(
                text("SELECT nextval(:s) FROM generate_series(1, :n)"),
                {"s": self._sequence[table], "n": BLOCK}).scalars()), reverse=True)
        return block.pop()
