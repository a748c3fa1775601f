"""Internationalised customer addresses against real Dovecot + aiosmtpd sink: the
ticket keeps `ayşe@örnek.com.tr` in Unicode, the ETA reply goes out with SMTPUTF8,
a server without SMTPUTF8 gets nothing and the ticket says why, and the customer's
reply (written with the domain's A-label) joins the same ticket."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import sqlalchemy as sa

from devstack.dovecot import DovecotServer, ImapAccount
from devstack.smtpsink import SmtpSink
from maild.errors import SendError
from maild.smtp import SMTPUTF8_UNSUPPORTED, SmtpSettings, send
from tests.integration.stack import (
    append,
    folder_messages,
    run_maild,
    show_json,
    tickets_json,
    write_config,
)

pytestmark = pytest.mark.integration

AYSE = "ayşe@örnek.com.tr"
YAMADA = "山田太郎@例え.jp"


def mail(frm: str, to: str, subject: str, msgid: str, extra: str = "") -> bytes:
    """Raw UTF-8 headers (RFC 6532), as a client writing to an SMTPUTF8 server sends them."""
    return (f"From: {frm}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: {msgid}\r\n"
            f"Date: Mon, 02 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n{extra}\r\n"
            "Merhaba, siparişim hâlâ gelmedi. Yardımcı olabilir misiniz?\r\n").encode()


def setup(tmp: Path, account: ImapAccount, db_url: str, sink: SmtpSink) -> Path:
    config = write_config(tmp, account, db_url, sink)
    run_maild(config, account, "db", "upgrade")
    return config


def db_rows(db_url: str, sql: str) -> list[tuple[object, ...]]:
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql(sql).all()]
    finally:
        engine.dispose()


# ---------------------------------------------------------------- maild.smtp.send

RAW_UTF8 = f"From: support@example.com\r\nTo: {YAMADA}\r\nSubject: ş\r\n\r\nhi\r\n".encode()


@pytest.mark.parametrize("rcpt", [AYSE, YAMADA, "ann@例え.jp"])
def test_send_uses_smtputf8_when_offered(smtp_sink: SmtpSink, rcpt: str) -> None:
    settings = SmtpSettings("127.0.0.1", smtp_sink.port, "none", timeout=10)
    send(settings, RAW_UTF8, "support@example.com", [rcpt])
    [got] = smtp_sink.wait_for(1)
    assert got.rcpt_tos == (rcpt,) and "SMTPUTF8" in got.mail_options
    assert got.raw.startswith(b"From: support@example.com\r\nTo: " + YAMADA.encode())


def test_ascii_mail_goes_without_smtputf8(smtp_sink: SmtpSink) -> None:
    settings = SmtpSettings("127.0.0.1", smtp_sink.port, "none", timeout=10)
    send(settings, b"Subject: hi\r\n\r\nbody \xc5\x9f\r\n", "support@example.com",
         ["ann@example.org"])
    assert "SMTPUTF8" not in smtp_sink.wait_for(1)[0].mail_options


@pytest.mark.parametrize(("rcpt", "raw"), [(AYSE, b"Subject: hi\r\n\r\nhi\r\n"),
                                           ("ann@example.org", RAW_UTF8)])
def test_send_without_smtputf8_is_a_permanent_failure(rcpt: str, raw: bytes) -> None:
    with SmtpSink(smtputf8=False) as sink:
        settings = SmtpSettings("127.0.0.1", sink.port, "none", timeout=10)
        with pytest.raises(SendError, match=f"^{SMTPUTF8_UNSUPPORTED}: ") as err:
            send(settings, raw, "support@example.com", [rcpt])
        assert err.value.permanent and err.value.reason == SMTPUTF8_UNSUPPORTED
        assert sink.messages == []
        send(settings, b"Subject: hi\r\n\r\nhi\r\n", "support@example.com", ["a@example.org"])
        assert len(sink.wait_for(1)) == 1  # ASCII mail still goes through


# ---------------------------------------------------------------- maild run --once

def test_idn_customer_gets_a_ticket_and_an_smtputf8_reply(
        dovecot: DovecotServer, imap_account: ImapAccount, db_url: str,
        tmp_path: Path) -> None:
    with SmtpSink(deliver_to=dovecot) as sink:
        append(imap_account, "INBOX", [(mail(f"Ayşe Yılmaz <{AYSE}>", imap_account.address,
                                             "Sipariş gecikti", "<c1@örnek.com.tr>"), None)])
        config = setup(tmp_path, imap_account, db_url, sink)
        run_maild(config, imap_account, "run", "--once")
        [ticket] = tickets_json(config, imap_account)
        assert ticket["customer"] == AYSE and ticket["subject"] == "Sipariş gecikti"
        [sent] = sink.wait_for(1)
        assert sent.rcpt_tos == (AYSE,) and "SMTPUTF8" in sent.mail_options
        reply = sent.parsed()
        assert f"<{AYSE}>".encode() in sent.raw and b"xn--" not in sent.raw
        assert reply["In-Reply-To"] == "<c1@örnek.com.tr>"
        shown = show_json(config, imap_account, ticket["id"])
        assert shown["customer"] == AYSE
        assert [m["from"] for m in shown["messages"] if not m["auto"]] == [AYSE]
        assert "auto_reply_sent" in [e["kind"] for e in shown["events"]]
        assert any(reply["Message-ID"].encode() in m
                   for m in folder_messages(imap_account, "Sent"))

        # The customer answers from a client that writes the domain as its A-label.
        name = "=?utf-8?b?" + base64.b64encode("Ayşe Yılmaz".encode()).decode() + "?="
        append(imap_account, "INBOX", [(mail(
            f"{name} <ayşe@xn--rnek-4qa.com.tr>", imap_account.address,
            "Re: Sipariş gecikti", "<c2@örnek.com.tr>",
            f"In-Reply-To: {reply['Message-ID']}\r\n"), None)])
        run_maild(config, imap_account, "run", "--once")
        [again] = tickets_json(config, imap_account)
        assert again["id"] == ticket["id"] and again["customer"] == AYSE
        assert again["message_count"] == 2
        shown = show_json(config, imap_account, ticket["id"])
        assert [m["from"] for m in shown["messages"] if not m["auto"]] == [AYSE, AYSE]
        assert len([m for m in shown["messages"] if m["auto"]]) == 1  # Sent copy: ours
        assert len(sink.messages) == 1
    assert db_rows(db_url, "SELECT count(*) FROM quarantine") == [(0,)]
    assert db_rows(db_url, "SELECT address FROM customers") == [(AYSE,)]


def test_server_without_smtputf8_sends_nothing_and_says_why(
        dovecot: DovecotServer, imap_account: ImapAccount, db_url: str,
        tmp_path: Path) -> None:
    with SmtpSink(deliver_to=dovecot, smtputf8=False) as sink:
        append(imap_account, "INBOX", [(mail(f"山田太郎 <{YAMADA}>", imap_account.address,
                                             "注文について", "<y1@example.jp>"), None),
                                       (mail(f"Ayşe <{AYSE}>", imap_account.address,
                                             "Sipariş", "<a1@example.com.tr>"), None)])
        config = setup(tmp_path, imap_account, db_url, sink)
        out = run_maild(config, imap_account, "run", "--once", "--json").stdout
        assert '"send_failed": 2' in out
        run_maild(config, imap_account, "run", "--once", "--now", "2099-01-01T00:00:00+00:00")
        assert sink.messages == []
        tickets = sorted(tickets_json(config, imap_account), key=lambda t: t["id"])
        assert [t["customer"] for t in tickets] == [YAMADA, AYSE]
        for t in tickets:
            events = show_json(config, imap_account, t["id"])["events"]
            failed = [e for e in events if e["kind"] == "delivery_failed"]
            assert [(e["address"], e["status"]) for e in failed] == [
                (t["customer"], SMTPUTF8_UNSUPPORTED)]
            assert failed[0]["diagnostic"].startswith(SMTPUTF8_UNSUPPORTED)
            assert "\n" not in failed[0]["diagnostic"]
    rows = db_rows(db_url, "SELECT status, attempts, last_error FROM outbox ORDER BY id")
    assert [(r[0], r[1]) for r in rows] == [("failed", 1), ("failed", 1)]
    assert all(str(r[2]).startswith(f"{SMTPUTF8_UNSUPPORTED}: ") for r in rows)
    assert db_rows(db_url, "SELECT count(*) FROM quarantine") == [(0,)]
