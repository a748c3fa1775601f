"""Database plumbing: engines, sessions and Alembic upgrades.

SQLite (the embedded default) gets WAL, a busy timeout, foreign keys and a
real outer transaction around SAVEPOINTs (so a batch commits as one unit);
PostgreSQL gets a connect timeout. Timeouts make a database held by someone
else a clear, retried error instead of a silent hang:

- SQLite: `PRAGMA busy_timeout` = 30 s (a write waits that long for another
  connection's write lock); `sqlite:///maild.db?timeout=5` sets it instead.
- PostgreSQL: `connect_timeout` = 10 s unless the URL sets it. A `lock_timeout`
  from the URL (`?options=-c lock_timeout=30s`), the role or the database is
  respected; otherwise maild sets 30 s (LOCK_TIMEOUT): a batch that waits longer
  is rolled back and fetched again (the Ingestor re-raises OperationalError).
  No `statement_timeout`: long reports stay possible.

A batch that hits a timeout is rolled back whole (its checkpoint too) and
fetched again by the next cycle. This module opens connections and runs
migrations; it holds no queries about tickets (see `maild.store.repo`).
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from maild.errors import ConfigError, MaildError
from maild.resources import migrations_dir
from maild.store import clip  # noqa: F401  (registers: over-long strings are clipped)


def resolve_url(url: str, base_dir: Path) -> str:
    """Make a relative SQLite path relative to the config file's directory."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        db_path = Path(parsed.database or "")
        if not db_path.is_absolute():
            return str(parsed.set(database=str(base_dir / db_path)))
    return url


BUSY_TIMEOUT_MS = 30_000  # SQLite: wait this long for another writer
# PostgreSQL: wait this long for a row or table lock when nothing else sets a
# lock_timeout (None: wait forever).
LOCK_TIMEOUT: str | None = "30s"
CONNECT_TIMEOUT = 10  # PostgreSQL: seconds to establish a connection


class DatabaseError(MaildError):
    """The database failed (down, locked, busy); the transaction was rolled back."""


def _sqlite_pragmas(busy_ms: int | None) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        if busy_ms is not None:  # else the URL's ?timeout= set it already
            cur.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
        cur.close()
    return on_connect


def _sqlite_savepoint(conn: Connection, _name: str | None) -> None:
    """Open the real transaction before a SAVEPOINT that would otherwise open it.

    pysqlite emits BEGIN only before the first INSERT/UPDATE/DELETE. A batch
    whose first write sits inside a SAVEPOINT (one per message) therefore had no
    outer transaction: the SAVEPOINT opened one and its RELEASE committed it, so
    each message committed on its own, ahead of the batch's checkpoint and
    beyond the batch's rollback. BEGIN IMMEDIATE takes the write lock at once,
    waiting up to the busy timeout (a deferred BEGIN that reads first could not
    wait: SQLite answers "database is locked" at once to a read-to-write upgrade).
    """
    dbapi_conn = conn.connection.dbapi_connection
    if dbapi_conn is not None and not dbapi_conn.in_transaction:
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # errors arrive as SQLAlchemy's, named


def _pg_lock_timeout(dbapi_conn: Any, _record: Any) -> None:
    """lock_timeout for maild's sessions, unless the URL, role or database set one."""
    if LOCK_TIMEOUT is None:
        return
    cur = dbapi_conn.cursor()
    cur.execute("SHOW lock_timeout")
    row = cur.fetchone()
    if row is None or str(row[0]) in ("0", "0ms"):
        cur.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
    cur.close()
    dbapi_conn.commit()  # SET is transactional: keep it past the pool's reset


def make_engine(url: str, base_dir: Path | None = None) -> Engine:
    """An engine for `url`; errors name the database.url key."""
    try:
        full = make_url(resolve_url(url, base_dir or Path.cwd()))
        connect_args: dict[str, Any] = {}
        if full.get_backend_name() == "postgresql" and "connect_timeout" not in full.query:
            connect_args["connect_timeout"] = CONNECT_TIMEOUT
        engine = create_engine(full, pool_pre_ping=True, connect_args=connect_args)
    except (SQLAlchemyError, ValueError, ImportError) as exc:
        raise ConfigError(f"database.url: {exc}") from None
    if engine.dialect.name == "sqlite":
        busy = None if "timeout" in full.query else BUSY_TIMEOUT_MS
        event.listen(engine, "connect", _sqlite_pragmas(busy))
        event.listen(engine, "savepoint", _sqlite_savepoint)
    elif engine.dialect.name == "postgresql":
        event.listen(engine, "connect", _pg_lock_timeout)
    return engine


def sqlite_path_problem(engine: Engine) -> str | None:
    """Why maild cannot use this SQLite database file, as one line naming the path (the
    directory must exist and be writable: SQLite keeps its WAL journal beside the
    file); None when fine or not a SQLite file."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    path = Path(database)
    parent = path.parent
    who = f"user {_user()}"
    if not parent.is_dir():
        return f"database {path}: the directory {parent} does not exist"
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        return f"database {path}: not readable and writable by {who}"
    if not os.access(parent, os.W_OK | os.X_OK):
        return (f"database {path}: the directory {parent} is not writable by {who} (SQLite "
                "writes its journal beside the database); use a directory maild may write, "
                "e.g. url = \"sqlite:////var/lib/maild/maild.db\"")
    return None


def _user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def check_database_path(engine: Engine) -> None:
    """Raise DatabaseError (one line naming the path) if the SQLite file is unusable."""
    problem = sqlite_path_problem(engine)
    if problem:
        raise DatabaseError(problem)


def describe_error(engine: Engine, exc: SQLAlchemyError) -> str:
    """One line for a person: which database, and the driver's message without SQL."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return f"database {engine.url.render_as_string(hide_password=True)}: {line}"


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def _alembic_config() -> AlembicConfig:
    location = migrations_dir()
    if not (location / "env.py").exists():
        raise MaildError(f"migrations not found at {location}: this maild package is "
                         "incomplete; reinstall it (pip install maild-*.whl)")
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(location))
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Apply migrations up to `revision`; returns (before, after) revisions. Database
    errors are one DatabaseError line naming the database."""
    check_database_path(engine)
    try:
        before = current_revision(engine)
        cfg = _alembic_config()
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
        return before, current_revision(engine)
    except SQLAlchemyError as exc:
        raise DatabaseError(describe_error(engine, exc)) from None
