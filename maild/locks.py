"""Which maild instance works a mailbox: a PostgreSQL advisory lock per mailbox.

Several `maild run` processes may share one PostgreSQL database for
availability. Each mailbox is ingested by the instance holding its session-level
advisory lock; the others stand by and retry. The lock lives on a dedicated
connection, so when the holder dies (even SIGKILL) PostgreSQL drops the
connection and the lock with it, and a standby takes over. The outbox needs no
lock here: rows are claimed with FOR UPDATE SKIP LOCKED.

SQLite has no such locks, so it runs one instance: `sqlite_instance_lock` takes an
exclusive flock on `DATABASE.run-lock` (beside the database file) for the life
of a `maild run`, and a second one is refused with a message naming the file
and the holder's pid. The kernel drops the flock when its process dies.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, text

from maild.errors import MaildError


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


@contextmanager
def sqlite_instance_lock(engine: Engine) -> Iterator[Path | None]:
    """Hold the one-instance lock of a SQLite database (yields its path; None for other
    databases and in-memory SQLite). Raises MaildError if another process holds it."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        yield None
        return
    path = Path(f"{database}.run-lock")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise MaildError(f"{path}: cannot create the instance lock: {exc.strerror} (the "
                         "database's directory must be writable by the user maild runs as)"
                         ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise MaildError(f"another maild run (pid {holder}) is using the SQLite database "
                             f"{database}: SQLite runs one instance; stop that one first, or "
                             "use PostgreSQL to run several") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing releases the flock
