"""Which maild instance works a mailbox: a PostgreSQL advisory lock per mailbox.

Several `maild run` processes may share one PostgreSQL database for
availability. Each mailbox is ingested by the instance holding its session-level
advisory lock; the others stand by and retry. The lock lives on a dedicated
connection, so when the holder dies (even SIGKILL) PostgreSQL drops the
connection and the lock with it, and a standby takes over. SQLite has no such
locks: one instance per SQLite database (documented). The outbox needs no lock
here: rows are claimed with FOR UPDATE SKIP LOCKED.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, text


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for `name`."""
    digest = hashlib.sha256(f"maild-mailbox:{name.lower()}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def mailbox_lock(engine: Engine, address: str) -> Iterator[bool]:
    """Yield True while this process holds `address`'s lock, False if another does."""
    if engine.dialect.name != "postgresql":
        yield True
        return
    key = lock_key(address)
    with engine.connect() as conn:
        held = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar())
        conn.commit()
        try:
            yield held
        finally:
            if held:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
