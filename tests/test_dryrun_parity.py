"""`maild rules test` decides exactly as ingest does (issue 15, "One decision path").

Every message of the golden corpora (tests/corpus/threading, tests/corpus/machine)
goes first through the dry run, then through ingest for real, in ingest order on
one database; what the dry run says ingest will do (ticket, events, outbox,
auto-reply and its reason) must be what ingest then did. Three cases where the
two paths used to differ are added: a rate limit that follows Reply-To, a reply
after the reopen window, and an agent's command mail.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from maild.app import App, build_app
from maild.clock import FixedClock
from maild.config import load_config
from maild.dryrun import rehearse
from maild.ingest import IngestItem
from maild.parse import parse_message
from maild.store.db import upgrade
from maild.store.models import Event, MessageRow, OutboxRow, Ticket
from tests.builders import TRUSTED_MX, authenticated, raw_mail, utc
from tests.corpus.loader import CORPUS_ROOT, load_corpus

REPO = Path(__file__).resolve().parents[1]
AGENT = "ayse@example.com"


def make_app(tmp: Path, db_url: str) -> App:
    path = tmp / "maild.toml"
    path.write_text(f"""
[database]
url = "{db_url}"
[mailbox]
address = "support@example.com"
imap_host = "127.0.0.1"
imap_port = 1
security = "none"
allow_insecure = true
username = "support@example.com"
[agents]
"{AGENT}" = "Ayşe"
[sender_auth]
trusted_authserv_id = "{TRUSTED_MX}"
[sla]
reopen_window_days = 7
[sla.policies.vip]
first_response = "1h"
[paths]
rules = "{REPO / 'maild' / 'defaults' / 'rules'}"
macros = "{REPO / 'maild' / 'defaults' / 'templates' / 'macros'}"
templates = "{REPO / 'maild' / 'defaults' / 'templates'}"
""")
    app = build_app(load_config(path), FixedClock(utc(2026, 11, 2, 10)), environ={})
    upgrade(app.engine)
    return app


@pytest.fixture
def app(db_url: str, tmp_path: Path) -> Iterator[App]:
    built = make_app(tmp_path, db_url)
    yield built
    built.engine.dispose()


def _marks(app: App) -> tuple[int, int, int]:
    with app.sessions() as s:
        return (s.scalar(select(func.max(Ticket.id))) or 0,
                s.scalar(select(func.max(Event.id))) or 0,
                s.scalar(select(func.max(OutboxRow.id))) or 0)


def ingested(app: App, raw: bytes, message_id: str, role: str, at: datetime,
             uid: int) -> dict[str, Any]:
    """Ingest `raw` for real and read back, independently of maild.dryrun, what it did."""
    tickets, events, outbox = _marks(app)
    folder = "Sent" if role == "sent" else "INBOX"
    app.ingestor(app.config.mailboxes[0]).ingest_batch(role, folder, 1, [
        IngestItem(uid, raw, at)])
    with app.sessions() as s:
        row = s.scalar(select(MessageRow).where(MessageRow.message_id == message_id))
        if row is None:
            return {"stored": False}
        ticket = s.get_one(Ticket, row.ticket_id)
        new = [e for e in s.scalars(select(Event).where(Event.id > events))]
        queued = s.scalars(select(OutboxRow).where(OutboxRow.id > outbox)).all()
        suppressed = [e.detail.get("reason") for e in new if e.kind == "auto_reply_suppressed"]
        rules = [e.detail.get("matched") for e in new if e.kind == "rules"]
        return {"stored": True,
                "ticket": "new" if ticket.id > tickets else f"#{ticket.id}",
                "status": ticket.status, "auto": row.auto,
                "events": sorted(e.kind for e in new),
                "outbox": sorted([o.kind, o.recipient] for o in queued),
                "auto_reply_sent": any(o.kind == "auto_reply" for o in queued),
                "suppressed": suppressed[0] if suppressed else None,
                "matched_rules": rules[0] if rules else []}


def predicted(out: dict[str, Any]) -> dict[str, Any]:
    """The dry run's answer in the shape of `ingested`."""
    ing = out["ingest"]
    if not ing["stored"]:
        return {"stored": False}
    return {"stored": True, "ticket": ing["ticket"], "status": ing["status"],
            "auto": ing["auto"], "events": ing["events"],
            "outbox": [[o["kind"], o["to"]] for o in ing["outbox"]],
            "auto_reply_sent": out["auto_reply"]["send"],
            "suppressed": ing["suppressed"],
            "matched_rules": out["matched_rules"]}


def both(app: App, clock: FixedClock, raw: bytes, message_id: str, role: str, at: datetime,
         uid: int) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    clock.set(at + timedelta(minutes=1))
    out = rehearse(app, raw, role=role, internaldate=at)
    return predicted(out), ingested(app, raw, message_id, role, at, uid), out


def test_threading_corpus_dry_run_matches_ingest(app: App) -> None:
    clock = app.clock
    assert isinstance(clock, FixedClock)
    for uid, msg in enumerate(load_corpus("threading").messages, start=1):
        mid = parse_message(msg.raw).message_id
        dry, real, _ = both(app, clock, msg.raw, mid, msg.role, msg.internaldate, uid)
        assert dry == real, msg.file


def test_machine_corpus_dry_run_matches_ingest(app: App) -> None:
    clock = app.clock
    assert isinstance(clock, FixedClock)
    files = sorted((CORPUS_ROOT / "machine").glob("*.eml"))
    assert len(files) > 15
    for uid, path in enumerate(files, start=1):
        raw = path.read_bytes()
        mid = parse_message(raw).message_id
        at = utc(2026, 11, 2, 9) + timedelta(minutes=uid)
        dry, real, _ = both(app, clock, raw, mid, "inbox", at, uid)
        assert dry == real, path.name


def test_rate_limit_follows_reply_to_as_ingest_does(app: App) -> None:
    clock = app.clock
    assert isinstance(clock, FixedClock)
    first = raw_mail(frm="Ann <ann@example.org>", msgid="<a1@example.org>",
                     subject="Where is my parcel", extra="Reply-To: orders@example.org")
    dry, real, _ = both(app, clock, first, "<a1@example.org>", "inbox", utc(2026, 11, 2, 9), 1)
    assert dry == real and real["auto_reply_sent"]
    second = raw_mail(frm="Bob <bob@example.org>", msgid="<b1@example.org>",
                      subject="Invoice question", extra="Reply-To: orders@example.org")
    dry, real, out = both(app, clock, second, "<b1@example.org>", "inbox",
                          utc(2026, 11, 2, 9, 30), 2)
    assert dry == real
    assert not real["auto_reply_sent"] and real["suppressed"].startswith("rate-limit-sender")
    assert out["auto_reply"]["skip_reason"].startswith("rate-limit-sender")


def test_reply_after_reopen_window_opens_new_ticket_as_ingest_does(app: App) -> None:
    clock = app.clock
    assert isinstance(clock, FixedClock)
    first = raw_mail(msgid="<o1@example.org>", subject="Broken lamp")
    both(app, clock, first, "<o1@example.org>", "inbox", utc(2026, 11, 2, 9), 1)
    with app.sessions.begin() as s:
        tid = s.scalars(select(MessageRow.ticket_id)).one()
        ticket = s.get_one(Ticket, tid)
        ticket.status, ticket.solved_at = "solved", utc(2026, 11, 2, 12)
    late = raw_mail(msgid="<o2@example.org>", subject=f"Re: Broken lamp [#{tid}]",
                    in_reply_to="<o1@example.org>", body="It broke again.")
    dry, real, out = both(app, clock, late, "<o2@example.org>", "inbox",
                          utc(2026, 11, 20, 9), 2)
    assert dry == real and real["ticket"] == "new", out["thread"]


def test_command_mail_is_a_command_in_the_dry_run_too(app: App) -> None:
    clock = app.clock
    assert isinstance(clock, FixedClock)
    first = raw_mail(msgid="<c1@example.org>", subject="Refund for order 77")
    both(app, clock, first, "<c1@example.org>", "inbox", utc(2026, 11, 2, 9), 1)
    with app.sessions() as s:
        tid = s.scalars(select(MessageRow.ticket_id)).one()
    command = authenticated(raw_mail(frm=f"Ayşe <{AGENT}>", msgid="<cmd1@example.com>",
                                     subject=f"Re: Refund for order 77 [#{tid}]",
                                     body="#status pending\n"))
    dry, real, out = both(app, clock, command, "<cmd1@example.com>", "inbox",
                          utc(2026, 11, 2, 9, 5), 2)
    assert dry == real
    assert "command" in real["events"] and real["status"] == "pending"
    assert out["auto_reply"]["send"] is False and out["matched_rules"] == []
    with app.sessions() as s:  # the dry runs stored nothing of their own
        assert s.scalar(select(func.count(MessageRow.id))) == 2
