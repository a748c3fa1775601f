"""Database plumbing: engines, sessions and Alembic upgrades.

SQLite (the embedded default) gets WAL, a busy timeout and foreign keys;
PostgreSQL needs nothing special. This module opens connections and runs
migrations; it holds no queries about tickets (see `maild.store.repo`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from maild.errors import ConfigError, MaildError

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent.parent / "migrations"


def resolve_url(url: str, base_dir: Path) -> str:
    """Make a relative SQLite path relative to the config file's directory."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        db_path = Path(parsed.database or "")
        if not db_path.is_absolute():
            return str(parsed.set(database=str(base_dir / db_path)))
    return url


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def make_engine(url: str, base_dir: Path | None = None) -> Engine:
    """An engine for `url`; errors name the database.url key."""
    try:
        full = resolve_url(url, base_dir or Path.cwd())
        engine = create_engine(full, pool_pre_ping=True)
    except (SQLAlchemyError, ValueError, ImportError) as exc:
        raise ConfigError(f"database.url: {exc}") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def _alembic_config() -> AlembicConfig:
    if not (MIGRATIONS_DIR / "env.py").exists():
        raise MaildError(f"migrations not found at {MIGRATIONS_DIR}; install maild from "
                         "its source tree (pip install -e .)")
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Apply migrations up to `revision`; returns (before, after) revisions."""
    before = current_revision(engine)
    cfg = _alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    return before, current_revision(engine)
