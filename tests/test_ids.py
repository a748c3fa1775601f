"""Ids handed out before the INSERT (maild.store.ids), and what they buy ingest: a batch's
rows inserted together, duplicates in one batch still caught while their rows are pending."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, func, select

from maild.store.ids import IdAllocator
from maild.store.models import Customer, MessageRow, Ticket
from tests.builders import migrated_sessions, raw_mail
from tests.test_ingest import items, make

NOW = datetime(2026, 11, 2, 12, tzinfo=UTC)


def test_ids_follow_the_largest_and_are_never_handed_out_twice(db_url: str) -> None:
    sessions = migrated_sessions(db_url)
    with sessions.begin() as s:
        ids = IdAllocator(s)
        first = [ids.next("customers") for _ in range(3)]
        s.add_all(Customer(id=i, address=f"c{i}@x", name="", created_at=NOW) for i in first)
    assert first == sorted(set(first)) and first[-1] - first[0] == 2
    with sessions.begin() as s:
        later = IdAllocator(s).next("customers")
        assert later > first[-1]
    with pytest.raises(ValueError, match="no id allocation"):
        IdAllocator(sessions()).next("events")


def test_postgresql_sessions_at_once_get_different_ids(db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite's write lock lets one session allocate at a time")
    sessions = migrated_sessions(db_url)
    with sessions.begin() as a, sessions.begin() as b:
        got = [IdAllocator(a).next("tickets"), IdAllocator(b).next("tickets")]
        assert got[0] != got[1]
        # messages and customers come in blocks: interleaved, still never the same one
        first, second = IdAllocator(a), IdAllocator(b)
        for table in ("messages", "customers"):
            mine = [n for _ in range(70) for n in (first.next(table), second.next(table))]
            assert len(set(mine)) == 140


def test_a_batch_inserts_its_messages_together(db_url: str) -> None:
    ing = make(db_url)
    statements: Counter[str] = Counter()

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements[" ".join(statement.split()[:3])] += 1

    engine = ing.sessions.kw["bind"]
    event.listen(engine, "before_cursor_execute", count)
    raws = [raw_mail(frm=f"c{i}@example.net", msgid=f"<m{i}@x>", subject=f"Question {i}")
            for i in range(20)]
    res = ing.ingest_batch("inbox", "INBOX", 7, items(*raws))
    event.remove(engine, "before_cursor_execute", count)
    assert (res.stored, res.new_tickets) == (20, 20)
    assert statements["INSERT INTO messages"] == 1  # was one per message
    assert statements["INSERT INTO tickets"] == 1
    assert statements["SELECT customers.id, customers.address,"] <= 1  # the batch's lookup
    if db_url.startswith("postgresql"):  # one nextval per ticket, a block for the rest
        assert statements["SELECT nextval(%(s)s)"] == 20
        assert statements["SELECT nextval(%(s)s) FROM"] == 2


def test_the_same_message_twice_in_one_batch_is_stored_once(db_url: str) -> None:
    ing = make(db_url)
    same = raw_mail(msgid="<twice@x>")
    other = raw_mail(frm="bo@example.net", msgid="<other@x>")
    res = ing.ingest_batch("inbox", "INBOX", 7, items(same, other, same))
    assert (res.stored, res.duplicates) == (2, 1)
    with ing.sessions() as s:
        assert s.scalar(select(func.count(MessageRow.id))) == 2
        ids = s.scalars(select(Ticket.id).order_by(Ticket.id)).all()
        assert ids == [ids[0], ids[0] + 1]  # no gaps on a fresh database
