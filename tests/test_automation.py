"""The ingest pipeline with the real rules and templates (no IMAP, no SMTP):
auto-reply age limit, our own non-ticket mail in Sent, poller resilience."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from maild.app import build_app
from maild.clock import FixedClock
from maild.compose import compose
from maild.config import load_config
from maild.ingest import IngestItem
from maild.outbox import enqueue
from maild.store.db import upgrade
from maild.store.models import OutboxRow, Ticket
from maild.views import show_ticket
from tests.builders import raw_mail, utc
from tests.test_cli import config

NOW = utc(2026, 11, 4, 9)


def app_for(tmp: Path):  # type: ignore[no-untyped-def]
    app = build_app(load_config(config(tmp)), FixedClock(NOW), environ={})
    upgrade(app.engine)
    return app


def test_old_mail_gets_no_auto_reply_recent_mail_does(tmp_path: Path) -> None:
    app = app_for(tmp_path)
    ing = app.ingestor(app.config.mailboxes[0])
    old = raw_mail(frm="Old <old@example.org>", msgid="<old@x>", subject="Old question")
    new = raw_mail(frm="New <new@example.org>", msgid="<new@x>", subject="New question")
    ing.ingest_batch("inbox", "INBOX", 1, [IngestItem(1, old, NOW - timedelta(days=3)),
                                           IngestItem(2, new, NOW - timedelta(minutes=5))])
    with app.sessions() as s:
        queued = s.scalars(select(OutboxRow.recipient)).all()
        events = show_ticket(s, 1)["events"]
    assert queued == ["new@example.org"]
    reasons = [e["reason"] for e in events if e["kind"] == "auto_reply_suppressed"]
    assert reasons and reasons[0].startswith("too old: arrived 72 h ago")


def test_own_digest_copy_in_sent_opens_no_ticket(tmp_path: Path) -> None:
    app = app_for(tmp_path)
    ing = app.ingestor(app.config.mailboxes[0])
    out = compose(sender="support@example.com", sender_name="maild", to="boss@example.com",
                  to_name="", subject="Support digest", body="figures", date=NOW,
                  ticket_id=None)
    with app.sessions.begin() as s:
        enqueue(s, out, mailbox_id=ing.mailbox_id(), ticket_id=None, kind="digest", now=NOW)
    res = ing.ingest_batch("sent", "Sent", 1, [IngestItem(1, out.raw, NOW)])
    assert (res.stored, res.duplicates) == (0, 1)
    with app.sessions() as s:
        assert s.scalars(select(Ticket)).all() == []


def test_next_response_target_after_a_follow_up(tmp_path: Path) -> None:
    from maild.sla import check_sla

    cfg = config(tmp_path, '[sla]\ntimezone = "UTC"\nbusiness_hours = "24/7"\n'
                           'first_response = "4h"\n[sla.policies.default]\n'
                           'first_response = "4h"\nnext_response = "2h"\n')
    app = build_app(load_config(cfg), FixedClock(NOW), environ={})
    upgrade(app.engine)
    ing = app.ingestor(app.config.mailboxes[0])
    ing.ingest_batch("inbox", "INBOX", 1, [IngestItem(1, raw_mail(), NOW)])
    agent = raw_mail(frm="Alice <support@example.com>", to="ann@example.org", msgid="<a1@x>",
                     subject="Re: Order missing [#1]", in_reply_to="<m1@example.org>",
                     date="Wed, 04 Nov 2026 10:00:00 +0000")
    ing.ingest_batch("sent", "Sent", 1, [IngestItem(1, agent, NOW + timedelta(hours=1))])
    follow = raw_mail(msgid="<m2@example.org>", subject="Re: Order missing [#1]",
                      in_reply_to="<a1@x>", references="<m1@example.org> <a1@x>")
    ing.ingest_batch("inbox", "INBOX", 1, [IngestItem(2, follow, NOW + timedelta(hours=3))])
    with app.sessions.begin() as s:
        t = s.get_one(Ticket, 1)
        assert t.next_due_at == NOW + timedelta(hours=5)
        assert check_sla(s, NOW + timedelta(hours=4)).next_breached == []
        assert check_sla(s, NOW + timedelta(hours=5)).next_breached == [1]
        assert check_sla(s, NOW + timedelta(hours=6)).next_breached == []
    second = raw_mail(frm="Alice <support@example.com>", to="ann@example.org",
                      msgid="<a2@x>", subject="Re: Order missing [#1]", in_reply_to="<m2@x>",
                      date="Wed, 04 Nov 2026 15:30:00 +0000")
    ing.ingest_batch("sent", "Sent", 1, [IngestItem(2, second, NOW + timedelta(hours=6.5))])
    with app.sessions() as s:
        t = s.get_one(Ticket, 1)
        assert t.next_due_at is None and t.next_breached is False
        assert t.first_response_at == NOW + timedelta(hours=1)
