"""Migrations build exactly the schema the models describe, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from maild.store.db import current_revision, head_revision, make_engine, upgrade
from maild.store.models import Base


def test_upgrade_matches_models_and_is_repeatable(db_url: str) -> None:
    engine = make_engine(db_url)
    before, after = upgrade(engine)
    assert before is None and after == head_revision()
    assert upgrade(engine) == (after, after)  # second run: nothing to do
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], diff
    assert current_revision(engine) == head_revision()


def test_step_by_step_upgrade_keeps_rows(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade(engine, "0001")
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO customers (address, name, created_at) "
                             "VALUES ('a@x.org', 'A', '2026-11-02 10:00:00')")
        conn.exec_driver_sql("INSERT INTO mailboxes (address, created_at) "
                             "VALUES ('s@x.org', '2026-11-02 10:00:00')")
        conn.exec_driver_sql(
            "INSERT INTO tickets (mailbox_id, customer_id, subject, normalized_subject, status,"
            " priority, tags, sla_breached, agent_replies, created_at, updated_at) VALUES "
            "(1, 1, 'Hi', 'hi', 'new', 'normal', '[]', false, 0, '2026-11-02 10:00:00',"
            " '2026-11-02 10:00:00')")
    upgrade(engine)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT subject FROM tickets").scalar() == "Hi"
