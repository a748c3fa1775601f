"""How agents answer, against real Dovecot + SMTP sink: `maild reply --send`,
drafts in the Drafts folder, and command mail (from an agent vs a customer)."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from devstack.dovecot import DovecotServer, ImapAccount
from devstack.smtpsink import SmtpSink
from maild.actions import AutomationHandler
from maild.app import App, build_app
from maild.commands import CommandHandler, UnlessCommandMail
from maild.config import load_config
from maild.daemon import deliver_outbox
from maild.drafts import DRAFT_HEADER, DraftHandler
from maild.drafts_sync import sync_drafts
from maild.ingest import Ingestor, MessageHandler
from maild.mailbox import MailboxClient
from maild.poller import Poller
from tests.builders import TRUSTED_MX, authenticated
from tests.integration.stack import (
    append,
    cli_json,
    env_for,
    folder_messages,
    imap,
    run_maild,
    show_json,
    write_config,
)
from tests.integration.test_autoreply import customer_mail

pytestmark = pytest.mark.integration

PASSWORD = "Hello, I forgot my password and cannot log in. The reset link never arrives."


def parsed(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


TRUST = f'[sender_auth]\ntrusted_authserv_id = "{TRUSTED_MX}"\n'


def wired_app(tmp: Path, account: ImapAccount, db_url: str, sink: SmtpSink,
              agents: dict[str, str] | None = None) -> App:
    table = "".join(f'"{a}" = "{n}"\n' for a, n in (agents or {}).items())
    config = write_config(tmp, account, db_url, sink,
                          extra=TRUST + (f"[agents]\n{table}" if table else ""))
    run_maild(config, account, "db", "upgrade")
    return build_app(load_config(config), environ=env_for(account))


def cycle(app: App, agents: dict[str, str]) -> None:
    """One `run --once` with the agent handlers wired as docs/agents.md says, then drafts."""
    auto = app.automation()
    mb = app.config.mailboxes[0]
    handlers: list[MessageHandler] = [CommandHandler(auto, app.clock, agents),
                UnlessCommandMail(AutomationHandler(auto, app.clock), agents),
                DraftHandler(app.clock, agents=agents)]
    ingestor = Ingestor(app.sessions, app.clock, mb.address, own_addresses=app.own_addresses(),
                        window_days=app.config.threading.window_days, handlers=handlers,
                        routing=app.routing())
    Poller(lambda: MailboxClient(app.imap_settings(0)), ingestor, inbox=mb.inbox_folder,
           sent=mb.sent_folder).run_once()
    deliver_outbox(app)
    sync_drafts(app)


def drafts(account: ImapAccount) -> list[tuple[tuple[bytes, ...], EmailMessage]]:
    client = imap(account)
    try:
        client.select_folder("Drafts", readonly=True)
        data = client.fetch(client.search("ALL"), [b"FLAGS", b"BODY.PEEK[]"])
        return [(tuple(v[b"FLAGS"]), parsed(v[b"BODY[]"])) for _, v in sorted(data.items())]
    finally:
        client.logout()


def test_reply_send_reaches_customer_threaded(dovecot: DovecotServer, imap_account: ImapAccount,
                                              db_url: str, smtp_sink: SmtpSink,
                                              tmp_path: Path) -> None:
    customer = dovecot.create_account(prefix="customer", domain="example.org")
    dovecot.deliver(imap_account.address, customer_mail(
        f"Ann <{customer.address}>", imap_account.address, "Cannot log in", "<p1@example.org>",
        body=PASSWORD))
    config = write_config(tmp_path, imap_account, db_url, smtp_sink)
    run_maild(config, imap_account, "db", "upgrade")
    run_maild(config, imap_account, "run", "--once")  # ticket #1 + its ETA auto-reply
    shown = run_maild(config, imap_account, "reply", "1", "--macro", "resolved").stdout
    assert "Subject: Re: Cannot log in [#1]" in shown and show_json(
        config, imap_account, 1)["status"] == "new"  # printing changes nothing
    out = cli_json(config, imap_account, "reply", "1", "--macro", "resolved", "--send",
                   "--agent", "Ayşe")
    assert out["done"] == ["status solved once the reply is sent"]
    assert show_json(config, imap_account, 1)["status"] == "new"  # not before it is sent
    run_maild(config, imap_account, "run", "--once")
    smtp_sink.wait_for(2)
    [reply] = [parsed(m) for m in folder_messages(customer, "INBOX")
               if out["message_id"].encode() in m]
    assert reply["In-Reply-To"] == "<p1@example.org>"
    assert reply["Subject"] == "Re: Cannot log in [#1]" and reply["Auto-Submitted"] is None
    assert "Ayşe" in str(reply["From"]) and "Ayşe" in reply.get_content()
    ticket = show_json(config, imap_account, 1)
    assert ticket["status"] == "solved" and ticket["agent_replies"] == 1
    assert ticket["first_response_at"] is not None
    assert [(e["from"], e["to"]) for e in ticket["events"] if e["kind"] == "status"] == [
        ("open", "solved")]  # the reply, once sent, made it open
    assert any(out["message_id"].encode() in m for m in folder_messages(imap_account, "Sent"))


def test_draft_placed_then_removed_after_agent_reply(
        dovecot: DovecotServer, imap_account: ImapAccount, db_url: str, smtp_sink: SmtpSink,
        tmp_path: Path) -> None:
    app = wired_app(tmp_path, imap_account, db_url, smtp_sink)
    dovecot.deliver(imap_account.address, customer_mail(
        "Ann <ann@example.org>", imap_account.address, "Cannot log in", "<d1@example.org>",
        body=PASSWORD))
    cycle(app, {})
    [(flags, draft)] = drafts(imap_account)
    assert b"\\Draft" in flags
    assert draft["In-Reply-To"] == "<d1@example.org>" and draft[DRAFT_HEADER] == "1"
    assert draft["Subject"] == "Re: Cannot log in [#1]" and draft["Auto-Submitted"] is None
    assert draft["To"] == "Ann <ann@example.org>" and "reset" in draft.get_content()
    agent_reply = customer_mail(f"Support <{imap_account.address}>", "ann@example.org",
                                "Re: Cannot log in [#1]", "<agent1@example.com>",
                                "In-Reply-To: <d1@example.org>\r\n", body="Done, try again.")
    append(imap_account, "Sent", [(agent_reply, None)])  # the agent's own mail client
    cycle(app, {})
    assert drafts(imap_account) == []
    ticket = show_json(Path(app.config.path), imap_account, 1)
    kinds = [e["kind"] for e in ticket["events"]]
    assert {"draft_pending", "draft_created", "draft_stale", "draft_removed"} <= set(kinds)
    assert ticket["agent_replies"] == 1


def test_command_mail_from_agent_but_not_from_customer(
        dovecot: DovecotServer, imap_account: ImapAccount, db_url: str, smtp_sink: SmtpSink,
        tmp_path: Path) -> None:
    customer = dovecot.create_account(prefix="customer", domain="example.org")
    agent = dovecot.create_account(prefix="agent", domain="example.com")
    agents = {agent.address: "Ayşe Yılmaz"}
    app = wired_app(tmp_path, imap_account, db_url, smtp_sink, agents)
    dovecot.deliver(imap_account.address, customer_mail(
        f"Ann <{customer.address}>", imap_account.address, "Cannot log in", "<k1@example.org>",
        body=PASSWORD))
    cycle(app, agents)
    smtp_sink.wait_for(1)  # the ETA auto-reply
    commands = "#macro resolved\r\n#tag vip\r\n\r\nThanks"
    dovecot.deliver(imap_account.address, customer_mail(
        f"Ann <{customer.address}>", imap_account.address, "[#1]", "<k2@example.org>",
        body=commands))
    cycle(app, agents)
    config = Path(app.config.path)
    ticket = show_json(config, imap_account, 1)
    assert len(smtp_sink.messages) == 1 and ticket["status"] == "new"
    assert "vip" not in ticket["tags"] and len(ticket["messages"]) == 3  # joined as text
    # A forged From: the agent's address and a forged copy of the trusted server's pass,
    # beneath the real server's fail and another server's pass: refused, no mail at all.
    forged = authenticated(customer_mail(
        f"Ayşe <{agent.address}>", imap_account.address, "[#1] close it", "<k9@example.net>",
        body=commands))
    at_mx = authenticated(forged, results="dmarc=fail header.from=example.com")
    dovecot.deliver(imap_account.address, authenticated(at_mx,
                                                        authserv_id="mx.attacker.example"))
    cycle(app, agents)
    ticket = show_json(config, imap_account, 1)
    [refused] = [e for e in ticket["events"] if e["kind"] == "command_refused"]
    assert refused["message_id"] == "<k9@example.net>" and refused["actor"] == agent.address
    assert "found: dmarc=fail" in refused["reason"]
    assert ticket["status"] == "new" and "vip" not in ticket["tags"]
    assert len(smtp_sink.messages) == 1 and folder_messages(agent, "INBOX") == []
    dovecot.deliver(imap_account.address, authenticated(customer_mail(
        f"Ayşe <{agent.address}>", imap_account.address, "[#1] close it", "<k3@example.com>",
        body=commands)))
    cycle(app, agents)
    smtp_sink.wait_for(3)
    [reply] = [parsed(m) for m in folder_messages(customer, "INBOX") if b"[#1]" in m
               and b"Auto-Submitted" not in m]
    assert reply["In-Reply-To"] == "<k2@example.org>" and "Ayşe" in reply.get_content()
    [confirm] = [parsed(m) for m in folder_messages(agent, "INBOX")]
    assert confirm["Auto-Submitted"] == "auto-replied"
    assert "Done on ticket #1" in confirm.get_content()
    ticket = show_json(config, imap_account, 1)
    assert ticket["status"] == "solved" and "vip" in ticket["tags"]
    assert ticket["agent_replies"] == 1 and ticket["first_response_at"] is not None
    status = [e for e in ticket["events"] if e["kind"] == "status"]
    assert [(e["actor"], e["to"]) for e in status] == [(agent.address, "solved")]
