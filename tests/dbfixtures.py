"""Database fixtures: every DB test runs on SQLite and on PostgreSQL.

PostgreSQL tests get a private schema (via search_path) that is dropped
afterwards; when no server answers they are skipped with the reason shown,
except under CI=true, where a missing PostgreSQL fails them: CI must not pass
on SQLite alone.
Set MAILD_TEST_PG_URL to point elsewhere (default: the local `test` database).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import sqlalchemy as sa

PG_URL = os.environ.get("MAILD_TEST_PG_URL",
                        "postgresql+psycopg://postgres@127.0.0.1:5432/test")
_pg_state: dict[str, str | None] = {}


def pg_unavailable() -> str | None:
    """None if PostgreSQL answers, else the reason (cached)."""
    if "reason" not in _pg_state:
        try:
            engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
            with engine.connect() as conn:
                conn.exec_driver_sql("select 1")
            engine.dispose()
            _pg_state["reason"] = None
        except Exception as exc:  # any failure means: skip, and say why
            _pg_state["reason"] = f"PostgreSQL at {PG_URL} not reachable: {exc}".splitlines()[0]
    return _pg_state["reason"]


def require_pg(reason: str | None, environ: Mapping[str, str] = os.environ) -> None:
    """Skip a PostgreSQL test when the server is missing; fail it under CI=true."""
    if reason is None:
        return
    if environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: PostgreSQL is required)", pytrace=False)
    pytest.skip(reason)


def _pg_schema_url() -> Iterator[str]:
    require_pg(pg_unavailable())
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:  # a leaked session must fail the test, not hang it
            conn.exec_driver_sql("SET lock_timeout = '20s'")
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL to an empty database, once per backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'maild.db'}"
    else:
        yield from _pg_schema_url()
