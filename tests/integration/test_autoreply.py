"""Issue 3 acceptance against real Dovecot + SMTP sink: the ETA round trip,
no auto-reply to machines, an SMTP outage, and a crash between send and mark."""

from __future__ import annotations

import email
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devstack.dovecot import DovecotServer, ImapAccount
from devstack.smtpsink import SmtpSink
from tests.integration.stack import (
    REPO,
    append,
    env_for,
    folder_messages,
    run_maild,
    show_json,
    tickets_json,
    write_config,
)

pytestmark = pytest.mark.integration


def customer_mail(frm: str, to: str, subject: str, msgid: str, extra: str = "",
                  body: str = "Hello, my order #1234 has not arrived yet. Can you help me?",
                  ctype: str = "text/plain; charset=utf-8") -> bytes:
    head = (f"From: {frm}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: {msgid}\r\n"
            f"Date: Mon, 02 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: {ctype}\r\n{extra}")
    return f"{head}\r\n{body}\r\n".encode()


def setup(tmp: Path, account: ImapAccount, db_url: str, sink: SmtpSink | None) -> Path:
    config = write_config(tmp, account, db_url, sink)
    run_maild(config, account, "db", "upgrade")
    return config


def test_eta_round_trip(dovecot: DovecotServer, imap_account: ImapAccount, db_url: str,
                        smtp_sink: SmtpSink, tmp_path: Path) -> None:
    customer = dovecot.create_account(prefix="customer", domain="example.org")
    raw = customer_mail(f"Ann Customer <{customer.address}>", imap_account.address,
                        "Order missing", "<c1@example.org>")
    dovecot.deliver(imap_account.address, raw)  # arrives like real mail, via LMTP
    config = setup(tmp_path, imap_account, db_url, smtp_sink)
    run_maild(config, imap_account, "run", "--once")
    [sent] = smtp_sink.wait_for(1)
    got = email.message_from_bytes(folder_messages(customer, "INBOX")[0])
    assert got["In-Reply-To"] == "<c1@example.org>"
    assert got["Subject"] == "Re: Order missing [#1]"
    assert got["Auto-Submitted"] == "auto-replied"
    assert got["X-Auto-Response-Suppress"] == "All"
    body = got.get_payload(decode=True).decode()
    assert "within 4 business hours" in body and "[#1]" in body
    ticket = show_json(config, imap_account, 1)
    auto = [m for m in ticket["messages"] if m["auto"]]
    assert len(auto) == 1 and auto[0]["message_id"] == got["Message-ID"]
    assert ticket["sla_due_at"] is not None
    assert "auto_reply_sent" in [e["kind"] for e in ticket["events"]]
    # The copy in Sent is recognised as our own: no second message, no agent reply.
    assert any(got["Message-ID"].encode() in m for m in folder_messages(imap_account, "Sent"))
    run_maild(config, imap_account, "run", "--once")
    again = show_json(config, imap_account, 1)
    assert len(again["messages"]) == 2 and again["agent_replies"] == 0
    assert len(smtp_sink.messages) == 1


MACHINES = {
    "exchange-ooo": ("Bob <bob@corp.example>", "Automatic reply: Order missing",
                     "Auto-Submitted: auto-generated\r\nX-Auto-Response-Suppress: All\r\n"
                     "X-MS-Exchange-Inbox-Rules-Loop: bob@corp.example\r\n", "vendor-autoreply"),
    "gmail-vacation": ("Carol <carol@gmail.example>", "Out of office",
                       "Auto-Submitted: auto-replied\r\nPrecedence: bulk\r\n", "auto-submitted"),
    "list": ("News <news@lists.example>", "Weekly digest",
             "List-Id: <news.lists.example>\r\nList-Unsubscribe: <mailto:u@lists.example>\r\n",
             "list-headers"),
    "noreply": ("Shop <no-reply@shop.example>", "Your receipt", "", "machine-sender"),
    "bounce": ("Mail Delivery System <MAILER-DAEMON@mx.example>", "Undelivered Mail",
               "Return-Path: <>\r\n", "report-content"),
}


def test_no_auto_reply_to_machines(imap_account: ImapAccount, db_url: str,
                                   smtp_sink: SmtpSink, tmp_path: Path) -> None:
    raws = []
    for i, (name, (frm, subject, headers, _)) in enumerate(MACHINES.items()):
        ctype = ("multipart/report; report-type=delivery-status; boundary=b"
                 if name == "bounce" else "text/plain; charset=utf-8")
        body = ("--b\r\nContent-Type: text/plain\r\n\r\nfailed\r\n--b\r\nContent-Type: "
                "message/delivery-status\r\n\r\nStatus: 5.1.1\r\n--b--"
                if name == "bounce" else "I am away until Monday.")
        raws.append(customer_mail(frm, imap_account.address, subject, f"<m{i}@x.example>",
                                  headers, body, ctype))
    raws.append(customer_mail(f"Support <{imap_account.address}>", imap_account.address,
                              "Our own mail", "<own@x.example>"))
    raws.append(customer_mail("Dan <dan@example.org>", imap_account.address, "First question",
                              "<d1@example.org>"))
    raws.append(customer_mail("Dan <dan@example.org>", imap_account.address,
                              "A different question", "<d2@example.org>"))
    append(imap_account, "INBOX", [(r, None) for r in raws])
    config = setup(tmp_path, imap_account, db_url, smtp_sink)
    run_maild(config, imap_account, "run", "--once")
    sent = smtp_sink.messages
    assert [m.rcpt_tos for m in sent] == [("dan@example.org",)]
    reasons, kinds = {}, {}
    people = tickets_json(config, imap_account)
    machines = tickets_json(config, imap_account, "--status", "filtered")
    for t in people + machines:
        shown = show_json(config, imap_account, t["id"])
        reasons[t["subject"]] = [e.get("reason") for e in shown["events"]
                                 if e["kind"] == "auto_reply_suppressed"]
        kinds[t["subject"]] = (shown["filtered"] or {}).get("kind")
    # machine mail opens only filtered tickets: none of them in the default listing
    assert sorted(t["subject"] for t in people) == ["A different question", "First question",
                                                    "Our own mail"]
    for _name, (_frm, subject, _h, reason) in MACHINES.items():
        assert reasons[subject] == [f"loop-guard:{reason}"], subject
    assert kinds == {"Automatic reply: Order missing": "auto-reply", "Out of office": "auto-reply",
                     "Weekly digest": "bulk", "Your receipt": "notification",
                     "Undelivered Mail": "bounce", "Our own mail": None,
                     "First question": None, "A different question": None}
    assert reasons["Our own mail"] == ["loop-guard:own-address"]
    assert reasons["A different question"][0].startswith("rate-limit-sender")


def test_smtp_down_then_back_delivers_exactly_once(imap_account: ImapAccount, db_url: str,
                                                   smtp_sink: SmtpSink, tmp_path: Path) -> None:
    append(imap_account, "INBOX", [(customer_mail(
        "Eve <eve@example.org>", imap_account.address, "Help", "<e1@example.org>"), None)])
    config = setup(tmp_path, imap_account, db_url, smtp_sink)
    smtp_sink.stop()
    out = run_maild(config, imap_account, "run", "--once", "--json").stdout
    assert '"send_retry": 1' in out
    smtp_sink.start()
    later = (datetime.now(UTC) + timedelta(minutes=2)).isoformat()
    run_maild(config, imap_account, "run", "--once", "--now", later)
    run_maild(config, imap_account, "run", "--once", "--now", later)
    assert len(smtp_sink.wait_for(1)) == 1
    smtp_sink.fail_next(451, "4.3.0 try later")  # nothing due: the fault stays unused
    assert len(smtp_sink.messages) == 1


CRASH_AFTER_SEND = """
import os, signal, sys
from maild import outbox
def die(self, row_id, *rest):
    os.kill(os.getpid(), signal.SIGKILL)
outbox.OutboxSender._mark_sent = die
from maild.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_kill_between_send_and_mark_resends_same_message_id(
        imap_account: ImapAccount, db_url: str, smtp_sink: SmtpSink, tmp_path: Path) -> None:
    append(imap_account, "INBOX", [(customer_mail(
        "Fay <fay@example.org>", imap_account.address, "Refund", "<f1@example.org>"), None)])
    config = setup(tmp_path, imap_account, db_url, smtp_sink)
    proc = subprocess.run([sys.executable, "-c", CRASH_AFTER_SEND, "--config", str(config),
                           "run", "--once"], env=env_for(imap_account), cwd=REPO, timeout=120)
    assert proc.returncode == -9
    assert len(smtp_sink.messages) == 1  # accepted by the server, but not marked sent
    run_maild(config, imap_account, "run", "--once")
    assert len(smtp_sink.messages) == 1  # the claim is fresh: no second send yet
    later = (datetime.now(UTC) + timedelta(minutes=11)).isoformat()
    run_maild(config, imap_account, "run", "--once", "--now", later)
    ids = [m.parsed()["Message-ID"] for m in smtp_sink.messages]
    assert len(ids) == 2 and len(set(ids)) == 1  # at-least-once, same Message-ID
    run_maild(config, imap_account, "run", "--once", "--now", later)
    assert len(smtp_sink.messages) == 2  # marked sent now: never a third time
    ticket = show_json(config, imap_account, 1)
    assert len([m for m in ticket["messages"] if m["auto"]]) == 1


@pytest.mark.parametrize("fault", ["451", "554", "drop"])
def test_smtp_refusals_and_dropped_data(imap_account: ImapAccount, db_url: str,
                                        smtp_sink: SmtpSink, tmp_path: Path, fault: str) -> None:
    append(imap_account, "INBOX", [(customer_mail(
        "Gus <gus@example.org>", imap_account.address, "Broken", "<g1@example.org>"), None)])
    config = setup(tmp_path, imap_account, db_url, smtp_sink)
    if fault == "drop":
        smtp_sink.drop_next()
    else:
        smtp_sink.fail_next(int(fault), "4.3.0 try later" if fault == "451" else "5.7.1 no")
    first = run_maild(config, imap_account, "run", "--once", "--json").stdout
    assert smtp_sink.messages == []
    later = (datetime.now(UTC) + timedelta(minutes=2)).isoformat()
    run_maild(config, imap_account, "run", "--once", "--now", later)
    events = [e["kind"] for e in show_json(config, imap_account, 1)["events"]]
    if fault == "554":  # permanent: marked failed with an event, never retried
        assert '"send_failed": 1' in first
        assert "auto_reply_failed" in events and smtp_sink.messages == []
    else:  # temporary: retried after the backoff and delivered once
        assert '"send_retry": 1' in first
        assert len(smtp_sink.messages) == 1 and "auto_reply_sent" in events
