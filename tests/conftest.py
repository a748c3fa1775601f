"""Shared pytest fixtures: databases (tests/dbfixtures.py), real mail servers
(devstack/pytest_plugin.py) and small builders for maild objects."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.dbfixtures import db_url, pg_unavailable  # noqa: F401  (fixtures)

pytest_plugins = ["devstack.pytest_plugin"]


def pytest_report_header(config: pytest.Config) -> list[str]:
    reason = pg_unavailable()
    return [f"postgresql: {'available' if reason is None else 'SKIPPED - ' + reason}"]


@pytest.fixture
def anyio_backend() -> Iterator[str]:
    yield "asyncio"
