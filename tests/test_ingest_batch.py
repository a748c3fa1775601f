"""Batched lookups (maild.store.batch) answer as per-message SQL would, inside a batch too;
a failing database fails the batch instead of quarantining good mail."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from bench.mailgen import MailGenerator
from maild.clock import FixedClock
from maild.ingest import IngestItem, Ingestor
from maild.store import batch as batch_module
from maild.store import repo
from maild.store.models import Customer, Event, MessageRow, Quarantine, Ticket
from maild.tickets import StoredMessage
from tests.builders import migrated_sessions, raw_mail
from tests.test_ingest import Exploding, items, make


class CountChecker:
    """Records the batch's previous-ticket count beside the SQL one."""

    name = "count-checker"

    def __init__(self) -> None:
        self.seen: list[tuple[int | None, int]] = []

    def handle(self, session: Session, stored: StoredMessage, parsed: Any) -> None:
        self.seen.append((stored.previous_tickets, repo.previous_ticket_count(
            session, stored.ticket.customer_id, stored.ticket.id)))


def test_rolled_back_message_leaves_nothing_for_the_rest_of_its_batch(db_url: str) -> None:
    ing = make(db_url, handlers=[Exploding("boom")])
    bob = "Bob New <bob@example.net>"
    res = ing.ingest_batch("inbox", "INBOX", 7, items(
        raw_mail(frm=bob, msgid="<b1@x>", subject="boom"),           # quarantined
        raw_mail(frm=bob, msgid="<b2@x>", subject="Re: boom", in_reply_to="<b1@x>"),
        raw_mail(frm=bob, msgid="<b3@x>", subject="Re: boom"),        # subject fallback
        raw_mail(frm=bob, msgid="<b1@x>", subject="boom again")))     # not a duplicate
    assert (res.stored, res.quarantined, res.duplicates, res.new_tickets) == (3, 1, 0, 2)
    with ing.sessions() as s:
        rows = s.execute(select(MessageRow.message_id, MessageRow.ticket_id)
                         .order_by(MessageRow.id)).all()
        (b2, t2), (b3, t3), (b1, t1) = rows  # PostgreSQL does not reuse rolled-back ids
        assert (b2, b3, b1) == ("<b2@x>", "<b3@x>", "<b1@x>") and t2 == t3 != t1
        assert s.scalar(select(func.count(Customer.id))) == 1


def test_previous_ticket_counts_match_sql(db_url: str) -> None:
    checker = CountChecker()
    ing = make(db_url, handlers=[checker, Exploding("boom")])
    ing.ingest_batch("inbox", "INBOX", 7, items(raw_mail(), raw_mail(
        msgid="<m0@x>", subject="Older question")))
    ing.ingest_batch("inbox", "INBOX", 7, items(
        raw_mail(msgid="<n1@x>", subject="New question"),
        raw_mail(msgid="<n2@x>", subject="boom"),
        raw_mail(msgid="<n3@x>", subject="Third question"),
        raw_mail(msgid="<n4@x>", subject="Re: Order missing", in_reply_to="<m1@example.org>"),
        raw_mail(frm="carl@example.net", msgid="<n5@x>", subject="Hi"), start=3))
    # "boom" fails the unisolated attempt after two messages; the batch is redone with a
    # savepoint per message, and the handlers see the same counts again
    assert [sql for _, sql in checker.seen[2:4]] == [2, 3]
    assert [batch for batch, _ in checker.seen[4:]] == [sql for _, sql in checker.seen[4:]]
    assert [sql for _, sql in checker.seen[4:]] == [2, 3, 3, 0, 0]


def test_failed_batch_lookup_falls_back_to_per_message_sql(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_a: object, **_k: object) -> None:
        raise RuntimeError("lookup failed")

    monkeypatch.setattr(batch_module.BatchLookup, "load", broken)
    ing = make(db_url)
    reply = raw_mail(msgid="<m2@example.org>", subject="Re: Order missing",
                     in_reply_to="<m1@example.org>")
    res = ing.ingest_batch("inbox", "INBOX", 7, items(raw_mail(), reply))
    assert (res.stored, res.new_tickets, res.quarantined) == (2, 1, 0)


def _snapshot(ing: Ingestor) -> dict[str, list[tuple[Any, ...]]]:
    with ing.sessions() as s:
        return {
            "tickets": [tuple(r) for r in s.execute(select(
                Ticket.id, Ticket.customer_id, Ticket.status, Ticket.last_customer_at,
                Ticket.normalized_subject).order_by(Ticket.id))],
            "messages": [tuple(r) for r in s.execute(select(
                MessageRow.message_id, MessageRow.ticket_id).order_by(MessageRow.id))],
            "events": [tuple(r) for r in s.execute(select(
                Event.ticket_id, Event.kind, Event.detail).order_by(Event.id))],
        }


def test_batches_of_200_store_what_batches_of_one_store(tmp_path: Path) -> None:
    """Batches of one never use what a batch added; batches of 200 mostly do."""
    end = datetime(2026, 11, 2, tzinfo=UTC)
    mail = list(MailGenerator(400, "support@example.com", seed=7, end=end))
    mail += mail[150:170]  # duplicates, inside the last batch and across batches
    batch = [IngestItem(i + 1, raw, at) for i, (raw, at) in enumerate(mail)]
    stores = []
    for size in (200, 1):
        ing = Ingestor(migrated_sessions(f"sqlite:///{tmp_path / f'b{size}.db'}"),
                       FixedClock(end), "support@example.com",
                       handlers=[Exploding("Forgot my password")])
        for i in range(0, len(batch), size):
            ing.ingest_batch("inbox", "INBOX", 7, batch[i:i + size])
        stores.append(_snapshot(ing))
    assert stores[0] == stores[1]
    assert len(stores[0]["messages"]) < 400  # some quarantined, the copies skipped


class DatabaseGone:
    """A handler whose statement fails the way a locked or lost database does."""

    name = "database-gone"

    def handle(self, session: Session, stored: StoredMessage, parsed: Any) -> None:
        if stored.row.message_id == "<m2@x>":
            raise OperationalError("UPDATE tickets ...", {}, Exception("database is locked"))


def test_database_failure_rolls_the_batch_back_instead_of_quarantining(db_url: str) -> None:
    ing = make(db_url, handlers=[DatabaseGone()])
    with pytest.raises(OperationalError):
        ing.ingest_batch("inbox", "INBOX", 7, items(
            raw_mail(msgid="<m1@x>"), raw_mail(msgid="<m2@x>", subject="Other")))
    with ing.sessions() as s:
        assert s.scalar(select(func.count(MessageRow.id))) == 0
        assert s.scalar(select(func.count(Quarantine.id))) == 0
    assert ing.checkpoint("inbox") is None
