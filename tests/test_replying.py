"""Agent paths without mail servers: command-line parsing, the replying service,
command mail and draft intents on SQLite and PostgreSQL, and the agent CLI."""

from __future__ import annotations

import email
import email.policy
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import select

from maild.actions import AutomationHandler
from maild.app import App, build_app
from maild.cli import main
from maild.clock import FixedClock
from maild.commands import (
    CommandHandler,
    UnlessCommandMail,
    is_command_mail,
    parse_commands,
    plan_commands,
)
from maild.config import load_config
from maild.drafts import DraftHandler, pending_drafts
from maild.errors import NotFoundError
from maild.ingest import IngestItem, Ingestor, MessageHandler
from maild.macros import load_macros
from maild.outbox import OutboxSender
from maild.parse import parse_message
from maild.replying import Agent, prepare_reply, send_reply, set_status
from maild.store.db import upgrade
from maild.store.models import Event, MessageRow, OutboxRow, Ticket
from tests.builders import TRUSTED_MX, authenticated, raw_mail, utc

REPO = Path(__file__).resolve().parents[1]
AGENTS = {"Ayse@Example.com": "Ayşe Yılmaz", "bob@example.com": "Bob"}
SUPPORT = "support@example.com"
PASSWORD = "Hello, I forgot my password and cannot log in. The reset link never arrives."


def write_config(tmp: Path, db_url: str, extra: str = "") -> Path:
    """A config for the app wiring without servers; `extra` adds TOML tables."""
    path = tmp / "maild.toml"
    path.write_text(f"""
[database]
url = "{db_url}"
[mailbox]
address = "{SUPPORT}"
imap_host = "127.0.0.1"
imap_port = 1
security = "none"
allow_insecure = true
username = "{SUPPORT}"
[sla.policies.vip]
first_response = "1h"
[autoreply]
sender_name = "Example Support"
company = "Example Ltd"
[paths]
rules = "{REPO / 'maild' / 'defaults' / 'rules'}"
macros = "{REPO / 'maild' / 'defaults' / 'templates' / 'macros'}"
templates = "{REPO / 'maild' / 'defaults' / 'templates'}"
[sender_auth]
trusted_authserv_id = "{TRUSTED_MX}"
{extra}""")
    return path


@pytest.fixture
def app(db_url: str, tmp_path: Path) -> App:
    built = build_app(load_config(write_config(tmp_path, db_url)),
                      FixedClock(utc(2026, 11, 2, 10)), environ={})
    upgrade(built.engine)
    return built


def ingest(app: App, raw: bytes, uid: int, role: str = "inbox",
           handlers: Sequence[MessageHandler] | None = None) -> None:
    auto = app.automation()
    chain: Sequence[MessageHandler] = handlers if handlers is not None else [
        CommandHandler(auto, app.clock, AGENTS),
        UnlessCommandMail(AutomationHandler(auto, app.clock), AGENTS),
        DraftHandler(app.clock, agents=AGENTS)]
    ing = Ingestor(app.sessions, app.clock, SUPPORT, handlers=chain)
    folder = "INBOX" if role == "inbox" else "Sent"
    ing.ingest_batch(role, folder, 1, [IngestItem(uid, raw, app.clock.now())])


def outbox(app: App, kind: str) -> list[EmailMessage]:
    with app.sessions() as s:
        raws = s.scalars(select(OutboxRow.raw).where(OutboxRow.kind == kind)
                         .order_by(OutboxRow.id)).all()
    return [email.message_from_bytes(r, policy=email.policy.default) for r in raws]


def events(app: App, kind: str) -> list[Event]:
    with app.sessions() as s:
        return list(s.scalars(select(Event).where(Event.kind == kind).order_by(Event.id)))


def ticket(app: App, tid: int = 1) -> Ticket:
    with app.sessions() as s:
        found = s.get_one(Ticket, tid)
        s.expunge(found)
        return found


def deliver(app: App) -> list[bytes]:
    sent: list[bytes] = []

    def smtp(raw: bytes, sender: str, rcpts: Sequence[str]) -> str:
        sent.append(raw)
        return "250 ok"

    OutboxSender(app.sessions, app.clock, smtp, own_addresses=[SUPPORT]).deliver_due()
    return sent


# --- command lines ----------------------------------------------------------------------


def test_parse_valid_commands_stop_at_first_text_line() -> None:
    script = parse_commands("\n#macro resolved\n\n#STATUS Solved\n#tag vip, billing\n"
                            "#assign me\nThanks!\n#tag ignored")
    assert script.errors == ()
    assert [(c.verb, c.arg, c.line) for c in script.commands] == [
        ("macro", "resolved", 2), ("status", "solved", 4), ("tag", "vip", 5),
        ("tag", "billing", 5), ("assign", "me", 6)]


@pytest.mark.parametrize(("text", "error"), [
    ("#macro", "line 1: #macro needs an argument"),
    ("#status closed", "line 1: bad status 'closed'"),
    ("#frobnicate x", "line 1: unknown command #frobnicate"),
    ("#macro a b", "line 1: #macro takes one argument"),
    ("#status solved\n#status open", "line 2: a second #status"),
    ("just text", "no commands found"),
])
def test_parse_invalid_commands_name_the_line(text: str, error: str) -> None:
    script = parse_commands(text)
    assert any(e.startswith(error) for e in script.errors), script.errors


def test_mixed_valid_and_invalid_lines_plan_nothing() -> None:
    macros = load_macros(REPO / "maild" / "defaults" / "templates" / "macros")
    script = parse_commands("#macro resolved\n#status bogus\n#tag ok")
    plan = plan_commands(script, macros=macros, agents=AGENTS, sender="ayse@example.com")
    assert plan.errors == ("line 2: bad status 'bogus' (use open|pending|solved)",)
    unknown = plan_commands(parse_commands("#macro nope\n#assign carol"), macros=macros,
                            agents=AGENTS, sender="ayse@example.com")
    assert unknown.errors == ("line 1: unknown macro 'nope'", "line 2: unknown agent 'carol'")
    ok = plan_commands(parse_commands("#macro resolved\n#assign bob\n#tag a"), macros=macros,
                       agents=AGENTS, sender="ayse@example.com")
    assert ok.errors == () and ok.macro == "resolved"
    assert ok.change.assignee == "bob@example.com" and ok.change.tags == ("a",)


def test_only_agents_send_command_mail() -> None:
    def mail(frm: str, subject: str = "[#1]", body: str = "#status solved",
             extra: str = "") -> bool:
        return is_command_mail(parse_message(raw_mail(frm=frm, subject=subject, body=body,
                                                      extra=extra)), AGENTS)

    assert mail("Ayse <ayse@example.com>")
    assert not mail("Ann <ann@example.org>")
    assert not mail("Ayse <ayse@example.com>", subject="no tag")
    assert not mail("Ayse <ayse@example.com>", body="Hi,\n#status solved")
    assert not mail("Ayse <ayse@example.com>", extra="Auto-Submitted: auto-replied")


# --- the replying service ---------------------------------------------------------------


def test_reply_is_threaded_human_mail_and_applies_status(app: App) -> None:
    ingest(app, raw_mail(body=PASSWORD), 1)
    ingest(app, raw_mail(msgid="<m2@example.org>", subject="Re: Order missing [#1]",
                         in_reply_to="<m1@example.org>", references="<m1@example.org>",
                         body="Any news?"), 2)
    with app.sessions.begin() as s:
        reply = prepare_reply(s, app.automation(), 1, "resolved", agent=Agent("Ayşe"),
                              now=app.clock.now())
        assert reply.in_reply_to == "<m2@example.org>"
        assert reply.subject == "Re: Order missing [#1]" and "Ayşe" in reply.body
        sent = send_reply(s, reply, now=app.clock.now(), actor="Ayşe")
    assert sent.done == ("status solved once the reply is sent",)
    [msg] = outbox(app, "macro")
    assert msg["In-Reply-To"] == "<m2@example.org>" and msg["Auto-Submitted"] is None
    assert msg["References"] == "<m1@example.org> <m2@example.org>"
    assert msg["To"] == "Ann Customer <ann@example.org>"
    assert ticket(app).status == "new" and events(app, "status") == []  # not sent yet
    app.clock.set(utc(2026, 11, 2, 10, 1))  # type: ignore[attr-defined]
    deliver(app)
    t = ticket(app)
    assert t.first_response_at == utc(2026, 11, 2, 10) and t.agent_replies == 1  # its Date
    assert t.status == "solved" and t.solved_at == app.clock.now()
    [status] = events(app, "status")
    assert status.detail == {"from": "open", "to": "solved", "reason": "reply_sent"}
    assert status.actor == "Ayşe"
    with app.sessions.begin() as s:
        assert set_status(s, s.get_one(Ticket, 1), "open", now=app.clock.now(), actor="x")
    assert ticket(app).solved_at is None


def test_reply_to_unknown_ticket_or_macro_is_not_found(app: App) -> None:
    ingest(app, raw_mail(), 1)
    with app.sessions() as s, pytest.raises(NotFoundError, match="no such ticket"):
        prepare_reply(s, app.automation(), 9, "resolved", agent=Agent("A"), now=app.clock.now())
    with app.sessions() as s, pytest.raises(NotFoundError, match="no macro named"):
        prepare_reply(s, app.automation(), 1, "nope", agent=Agent("A"), now=app.clock.now())


# --- command mail -----------------------------------------------------------------------


def test_command_mail_from_agent_sends_macro_and_confirms(app: App) -> None:
    ingest(app, raw_mail(body=PASSWORD), 1)
    ingest(app, authenticated(raw_mail(frm="Ayse <ayse@example.com>", msgid="<c1@example.com>",
                                       subject="[#1] please close",
                                       body="#macro resolved\n#tag vip\n\nta")), 2)
    t = ticket(app)
    assert t.status == "new" and "vip" in t.tags  # solved once the reply is sent
    deliver(app)
    assert ticket(app).status == "solved"
    with app.sessions() as s:
        assert s.scalar(select(Ticket.id).where(Ticket.id == 2)) is None  # no stray ticket
        tickets = {e.ticket_id for e in s.scalars(select(Event).where(Event.kind == "joined"))}
    assert tickets == {1}
    [macro] = outbox(app, "macro")
    assert macro["To"] == "Ann Customer <ann@example.org>"
    assert macro["In-Reply-To"] == "<m1@example.org>" and "Ayşe" in macro.get_content()
    [confirm] = outbox(app, "command_reply")
    assert confirm["To"] == "Ayşe Yılmaz <ayse@example.com>"
    assert confirm["Auto-Submitted"] == "auto-replied"
    assert "Done on ticket #1" in confirm.get_content()
    assert [e.actor for e in events(app, "status")] == ["ayse@example.com"]
    assert len(outbox(app, "auto_reply")) == 1  # only the customer's ETA reply


def test_invalid_command_mail_changes_nothing_and_lists_errors(app: App) -> None:
    ingest(app, raw_mail(body=PASSWORD), 1)
    ingest(app, authenticated(raw_mail(frm="bob@example.com", msgid="<c2@example.com>",
                                       subject="Re: [#1]",
                                       body="#macro resolved\n#status closed\n#tag x")), 2)
    t = ticket(app)
    assert t.status == "new" and "x" not in t.tags and outbox(app, "macro") == []
    [confirm] = outbox(app, "command_reply")
    assert "Nothing was done" in confirm.get_content()
    assert "bad status 'closed'" in confirm.get_content()
    [rejected] = events(app, "command_rejected")
    assert rejected.actor == "bob@example.com"


TEAM = '[agents]\n"ayse@example.com" = "Ayşe Yılmaz"\n"bob@example.com" = "Bob"\n'


def team_app(db_url: str, tmp_path: Path, trusted: bool = True) -> App:
    """An app that knows its agents when it routes mail, as `maild run` does."""
    config = write_config(tmp_path, db_url, TEAM)
    if not trusted:
        config.write_text(config.read_text().replace(f'trusted_authserv_id = "{TRUSTED_MX}"',
                                                     ""))
    built = build_app(load_config(config), FixedClock(utc(2026, 11, 2, 10)), environ={})
    upgrade(built.engine)
    return built


def refused_command(app: App, raw: bytes, caplog: pytest.LogCaptureFixture) -> Event:
    """Ingest `raw` (a command from an agent's address) the way `maild run` does and
    check it was refused: nothing changed or queued, one `command_refused` event on
    the ticket it names, a log line, and the mail kept as the agent's note."""
    ingestor = app.ingestor(app.config.mailboxes[0])
    ingestor.ingest_batch("inbox", "INBOX", 1, [IngestItem(1, raw_mail(body=PASSWORD),
                                                           app.clock.now())])
    before = ticket(app)
    with caplog.at_level("WARNING", logger="maild.commands"):
        ingestor.ingest_batch("inbox", "INBOX", 1, [IngestItem(2, raw, app.clock.now())])
    t = ticket(app)
    assert (t.status, t.tags, t.assignee, t.solved_at) == (
        before.status, before.tags, before.assignee, before.solved_at)
    assert outbox(app, "macro") == [] and outbox(app, "command_reply") == []
    assert events(app, "command") == [] and events(app, "command_rejected") == []
    assert events(app, "status") == [] and events(app, "assigned") == []
    with app.sessions() as s:  # kept as the agent's note (auto), on its own ticket
        kept = s.scalars(select(MessageRow).where(MessageRow.message_id == "<f1@example.com>"))
        [row] = kept.all()
        assert row.auto and row.sender_class == "agent"
    [refused] = events(app, "command_refused")
    assert refused.ticket_id == 1 and refused.actor == "ayse@example.com"
    assert refused.detail["message_id"] == "<f1@example.com>"
    assert any("refused" in r.getMessage() and "<f1@example.com>" in r.getMessage()
               for r in caplog.records)
    return refused


def test_authenticated_command_through_the_app_is_carried_out(db_url: str,
                                                              tmp_path: Path) -> None:
    """The same path as the refusals, with the trusted server's pass on top."""
    app = team_app(db_url, tmp_path)
    ingestor = app.ingestor(app.config.mailboxes[0])
    ingestor.ingest_batch("inbox", "INBOX", 1, [
        IngestItem(1, raw_mail(body=PASSWORD), app.clock.now()),
        IngestItem(2, authenticated(raw_mail(**FORGED)), app.clock.now())])
    t = ticket(app)
    assert (t.status, t.assignee) == ("new", "bob@example.com") and "vip" in t.tags
    assert len(outbox(app, "macro")) == 1 and len(outbox(app, "command_reply")) == 1
    deliver(app)
    assert ticket(app).status == "solved"  # once the macro's reply went out
    assert events(app, "command_refused") == [] and len(events(app, "command")) == 1


FORGED = dict(frm="Ayse <ayse@example.com>", msgid="<f1@example.com>",
              subject="[#1] please close", body="#macro resolved\n#assign bob\n#tag vip")


def test_forged_agent_from_is_refused(db_url: str, tmp_path: Path,
                                      caplog: pytest.LogCaptureFixture) -> None:
    refused = refused_command(team_app(db_url, tmp_path), raw_mail(**FORGED), caplog)
    assert "no readable Authentication-Results from mx.example.com" in refused.detail["reason"]


def test_command_vouched_for_by_another_server_is_refused(
        db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    raw = authenticated(raw_mail(**FORGED), authserv_id="mx.attacker.example")
    refused_command(team_app(db_url, tmp_path), raw, caplog)


def test_command_signed_by_an_unaligned_domain_is_refused(
        db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    raw = authenticated(raw_mail(**FORGED), results="dkim=pass header.d=attacker.example; "
                        "dmarc=fail header.from=example.com")
    refused = refused_command(team_app(db_url, tmp_path), raw, caplog)
    assert "found: dkim=pass, dmarc=fail" in refused.detail["reason"]


def test_command_mail_is_refused_without_a_trusted_server(
        db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    app = team_app(db_url, tmp_path, trusted=False)
    refused = refused_command(app, authenticated(raw_mail(**FORGED)), caplog)
    assert "no trusted server configured" in refused.detail["reason"]


@pytest.mark.parametrize("status", ["solved", "pending"])
def test_command_in_thread_does_not_reopen_or_count_as_customer(app: App, status: str) -> None:
    ingest(app, raw_mail(body=PASSWORD), 1)
    with app.sessions.begin() as s:
        set_status(s, s.get_one(Ticket, 1), status, now=app.clock.now(), actor="x",
                   calendar=app.automation().calendar)
    before = ticket(app)
    app.clock.set(utc(2026, 11, 2, 12))  # type: ignore[attr-defined]
    ingest(app, authenticated(raw_mail(frm="ayse@example.com", msgid="<c3@example.com>",
                                       subject="Re: Order missing [#1]",
                                       in_reply_to="<m1@example.org>", body="#tag followup")), 2)
    t = ticket(app)
    assert t.status == status and "followup" in t.tags
    assert (t.solved_at, t.pending_since, t.sla_due_at, t.last_customer_at) == (
        before.solved_at, before.pending_since, before.sla_due_at, before.last_customer_at)
    assert [e.detail for e in events(app, "status")] == [{"from": "new", "to": status}]
    assert events(app, "reopened") + events(app, "customer_replied") == []
    assert events(app, "sla_resumed") == [] and len(events(app, "command")) == 1


def test_pending_macro_pauses_the_sla_clock_once_sent(app: App) -> None:
    ingest(app, raw_mail(body=PASSWORD), 1)
    with app.sessions.begin() as s:
        reply = prepare_reply(s, app.automation(), 1, "request-details", agent=Agent("A"),
                              now=app.clock.now())
        send_reply(s, reply, now=app.clock.now(), actor="A", calendar=app.automation().calendar)
    assert ticket(app).status == "new"
    app.clock.set(utc(2026, 11, 2, 10, 5))  # type: ignore[attr-defined]
    deliver(app)
    t = ticket(app)
    assert t.status == "pending" and t.pending_since == app.clock.now()


def test_same_mail_from_customer_only_joins_the_ticket(app: App) -> None:
    ingest(app, raw_mail(body=PASSWORD), 1)
    ingest(app, raw_mail(msgid="<m9@example.org>", subject="[#1]",
                         body="#macro resolved\n#status solved"), 2)
    t = ticket(app)
    assert t.status == "new" and outbox(app, "macro") == []
    assert outbox(app, "command_reply") == [] and events(app, "command") == []
    with app.sessions() as s:
        assert len(s.get_one(Ticket, 1).messages) == 2


# --- draft intents ----------------------------------------------------------------------


def test_draft_pending_for_new_ticket_then_stale_after_agent_reply(app: App) -> None:
    ingest(app, raw_mail(body=PASSWORD), 1)
    [pending] = events(app, "draft_pending")
    assert pending.detail == {"message_id": "<m1@example.org>", "macro": "password-reset"}
    with app.sessions() as s:
        assert [(w.ticket_id, w.action) for w in pending_drafts(s)] == [(1, "create")]
    agent = raw_mail(frm=SUPPORT, to="ann@example.org", msgid="<a1@example.com>",
                     subject="Re: Order missing [#1]", in_reply_to="<m1@example.org>")
    ingest(app, agent, 1, role="sent")
    assert len(events(app, "draft_stale")) == 1
    with app.sessions() as s:  # never placed: nothing to delete, just skip it
        assert [(w.ticket_id, w.action) for w in pending_drafts(s)] == [(1, "skip")]


# --- the agent CLI ----------------------------------------------------------------------


def run_cli(config: Path, *args: str) -> int:
    return main(["--config", str(config), *args])


@pytest.fixture
def cli_config(tmp_path: Path) -> Path:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'cli.db'}")
    assert run_cli(config, "db", "upgrade") == 0
    built = build_app(load_config(config), FixedClock(utc(2026, 11, 2, 10)), environ={})
    ingest(built, raw_mail(body=PASSWORD), 1)
    return config


def test_cli_reply_prints_edits_and_queues(cli_config: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    assert run_cli(cli_config, "reply", "1", "--macro", "resolved", "--agent", "Zoe") == 0
    shown = capsys.readouterr().out
    assert "Subject: Re: Order missing [#1]" in shown and "Zoe" in shown
    editor = tmp_path / "edit.py"
    editor.write_text("import sys\nopen(sys.argv[1], 'w').write('Edited body.\\n')\n")
    monkeypatch.setenv("EDITOR", f"{sys.executable} {editor}")
    monkeypatch.setenv("MAILD_AGENT_NAME", "Ayşe")
    assert run_cli(cli_config, "reply", "1", "--macro", "resolved", "--edit", "--send",
                   "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["queued"] and out["body"] == "Edited body.\n"
    assert out["done"] == ["status solved once the reply is sent"]
    assert run_cli(cli_config, "tickets", "show", "1", "--json") == 0
    assert json.loads(capsys.readouterr().out)["status"] == "new"  # not sent yet
    later = FixedClock(datetime.now(UTC) + timedelta(minutes=1))  # the CLI ran on real time
    deliver(build_app(load_config(cli_config), later, environ={}))
    assert run_cli(cli_config, "tickets", "show", "1", "--json") == 0
    shown_ticket = json.loads(capsys.readouterr().out)
    assert shown_ticket["status"] == "solved"
    assert [e["actor"] for e in shown_ticket["events"] if e["kind"] == "status"] == ["Ayşe"]


def test_cli_edit_to_empty_sends_nothing(cli_config: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    editor = tmp_path / "empty.py"
    editor.write_text("import sys\nopen(sys.argv[1], 'w').write('  \\n')\n")
    monkeypatch.setenv("EDITOR", f"{sys.executable} {editor}")
    assert run_cli(cli_config, "reply", "1", "--macro", "resolved", "--edit", "--send") == 1
    assert "empty" in capsys.readouterr().err
    assert run_cli(cli_config, "tickets", "show", "1", "--json") == 0
    assert json.loads(capsys.readouterr().out)["status"] == "new"


def test_cli_macros_list_and_render(cli_config: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(cli_config, "macros", "list", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert {"name", "language", "title", "tags"} <= set(listed[0])
    assert {("resolved", "tr"), ("resolved", "en")} <= {(m["name"], m["language"])
                                                        for m in listed}
    assert run_cli(cli_config, "macros", "render", "resolved", "--ticket", "1",
                   "--language", "tr", "--json") == 0
    rendered = json.loads(capsys.readouterr().out)
    assert rendered["language"] == "tr" and rendered["subject"].endswith("[#1]")
    assert run_cli(cli_config, "macros", "render", "nope", "--ticket", "1") == 2
    assert "no macro named 'nope'" in capsys.readouterr().err


def test_a_status_waiting_for_its_reply_is_withheld_if_the_customer_wrote_since(
        app: App) -> None:
    ingest(app, raw_mail(body=PASSWORD), 1)
    with app.sessions.begin() as s:
        reply = prepare_reply(s, app.automation(), 1, "resolved", agent=Agent("A"),
                              now=app.clock.now())
        sent = send_reply(s, reply, now=app.clock.now(), actor="A")
    app.clock.set(utc(2026, 11, 2, 10, 30))  # type: ignore[attr-defined]
    ingest(app, raw_mail(msgid="<m2@example.org>", subject="Re: Order missing [#1]",
                         in_reply_to="<m1@example.org>", body="One more thing!"), 2)
    deliver(app)
    assert ticket(app).status == "open"  # answered, but not solved over the new message
    [withheld] = events(app, "status_withheld")
    assert withheld.detail == {"status": "solved", "message_id": sent.message_id,
                               "reason": "the customer wrote after the reply was queued"}
