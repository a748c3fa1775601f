"""Internationalised addresses (RFC 6531/6532): parsed, checked and composed in their
Unicode form, never punycoded; an A-label domain becomes its U-label; ASCII mail is
composed byte for byte as before; a `smtputf8-unsupported` failure is recorded on the
ticket as a `delivery_failed` event."""

from __future__ import annotations

import base64
import email
import email.policy
import re
import uuid
from collections.abc import Sequence
from email.header import Header
from typing import Any
from unittest import mock

import pytest
from sqlalchemy import select

from maild.addresses import unicode_domain, usable_address
from maild.clock import FixedClock
from maild.compose import Outgoing, compose
from maild.errors import SendError
from maild.ingest import IngestItem, Ingestor
from maild.outbox import OutboxSender, enqueue
from maild.parse import decode_header_value, parse_message
from maild.smtp import SMTPUTF8_UNSUPPORTED, needs_smtputf8
from maild.store.models import OutboxRow
from maild.views import show_ticket
from tests.builders import migrated_sessions, raw_mail, utc

AYSE = "ayşe@örnek.com.tr"
YAMADA = "山田太郎@例え.jp"
AYSE_ALABEL = "ayşe@xn--rnek-4qa.com.tr"  # örnek -> xn--rnek-4qa (IDNA)


def b64_word(text: str) -> str:
    return f"=?utf-8?b?{base64.b64encode(text.encode()).decode()}?="


# ---------------------------------------------------------------- parse

@pytest.mark.parametrize(("frm", "name", "addr"), [
    (f"Ayşe Yılmaz <{AYSE}>", "Ayşe Yılmaz", AYSE),                      # raw UTF-8 (RFC 6532)
    (f"{b64_word('Ayşe Yılmaz')} <{AYSE}>", "Ayşe Yılmaz", AYSE),  # encoded name, UTF-8 address
    (f"=?utf-8?q?Ay=C5=9Fe?= =?utf-8?q?_Y=C4=B1lmaz?= <{AYSE}>", "Ayşe Yılmaz", AYSE),
    (b64_word(f"Ayşe Yılmaz <{AYSE}>"), "Ayşe Yılmaz", AYSE),           # all one encoded word
    (f"山田太郎 <{YAMADA}>", "山田太郎", YAMADA),
    (f"{b64_word('山田 太郎')} <{YAMADA}>", "山田 太郎", YAMADA),
    (YAMADA, "", YAMADA),
    (f"Ayşe <{AYSE_ALABEL}>", "Ayşe", AYSE),                              # A-label -> U-label
    ("Ayse <AYSE@XN--RNEK-4QA.COM.TR>", "Ayse", "ayse@örnek.com.tr"),   # lower-cased as before
    (f"{b64_word('山田')} <山田@xn--r8jz45g.jp>", "山田", "山田@例え.jp"),
])
def test_parse_keeps_the_unicode_address(frm: str, name: str, addr: str) -> None:
    parsed = parse_message(raw_mail(frm=frm, subject="Sipariş gecikti"))
    assert (parsed.from_name, parsed.from_addr) == (name, addr)
    assert parsed.parse_error is None
    assert "xn--" not in parsed.from_addr


def test_parse_reads_utf8_in_every_address_header_and_the_subject() -> None:
    raw = raw_mail(frm=f"Ayşe <{AYSE}>", to=f"Destek <destek@örnek.com.tr>, {YAMADA}",
                   subject="Sipariş hâlâ gelmedi",
                   extra=f"Cc: {b64_word('Çağla')} <çağla@xn--rnek-4qa.com.tr>\r\n"
                         f"Reply-To: <{AYSE}>")
    parsed = parse_message(raw)
    assert [a.addr for a in parsed.to] == ["destek@örnek.com.tr", YAMADA]
    assert [(a.name, a.addr) for a in parsed.cc] == [("Çağla", "çağla@örnek.com.tr")]
    assert parsed.reply_to[0].addr == AYSE
    assert parsed.subject == "Sipariş hâlâ gelmedi"
    assert parsed.header("From") == f"Ayşe <{AYSE}>"


def test_parse_reads_utf8_message_ids() -> None:
    """RFC 6532 clients may put their IDN domain in the Message-ID: once a TypeError
    that left the whole message unparsed (and its customer `unknown@invalid`)."""
    raw = raw_mail(frm=f"Ayşe <{AYSE}>", msgid="<c2@örnek.com.tr>",
                   in_reply_to="<c1@örnek.com.tr>", references="<c0@x.org> <c1@örnek.com.tr>")
    parsed = parse_message(raw)
    assert parsed.parse_error is None and parsed.from_addr == AYSE
    assert parsed.message_id == "<c2@örnek.com.tr>" and not parsed.message_id_synthetic
    assert parsed.thread_ids == ("<c1@örnek.com.tr>", "<c0@x.org>")


def test_decode_header_value_keeps_ascii_behaviour() -> None:
    assert decode_header_value("=?utf-8?q?Ann?= <ann@example.org>") == "Ann <ann@example.org>"
    assert decode_header_value("=?bogus?q?x?= ü") == "=?bogus?q?x?= ü"  # unreadable: raw
    assert decode_header_value("ş =?utf-8?q?Y?=") == "ş Y"  # the space before a word stays
    eight_bit = Header("ay\udcc5\udc9fe", charset="unknown-8bit")  # as compat32 hands it over
    assert decode_header_value(eight_bit) == "ayşe"


def test_non_utf8_bytes_do_not_make_a_usable_address() -> None:
    raw = b"From: Ay\xfee <ay\xfee@example.com.tr>\r\nSubject: x\r\n\r\nhi\r\n"  # Latin-5
    parsed = parse_message(raw)
    assert "\ufffd" in parsed.from_addr and not usable_address(parsed.from_addr)


# ---------------------------------------------------------------- addresses

@pytest.mark.parametrize("addr", [AYSE, YAMADA, "müller@bücher.de", "ann@例え.jp",
                                  "δοκιμή@παράδειγμα.δοκιμή", AYSE_ALABEL])
def test_usable_address_accepts_internationalised(addr: str) -> None:
    assert usable_address(addr)


@pytest.mark.parametrize("addr", ["ay\ufffde@örnek.com.tr", "ayşe@ör\x85nek.com.tr",
                                  "ay\x9bşe@örnek.com.tr", "ayşe @örnek.com.tr",
                                  "ayşe@örnek.com.tr\u2028x"])
def test_usable_address_refuses_garbled_or_controls(addr: str) -> None:
    assert not usable_address(addr)


@pytest.mark.parametrize(("addr", "expected"), [
    ("ayşe@xn--rnek-4qa.com.tr", AYSE),
    ("x@xn--r8jz45g.jp", "x@例え.jp"),
    ("x@XN--R8JZ45G.jp", "x@例え.jp"),
    ("x@xn--zz.example", "x@xn--zz.example"),          # not punycode: kept
    ("x@xn--fa-hia.de", "x@xn--fa-hia.de"),            # IDNA 2008 only (faß): kept
    ("ann@example.org", "ann@example.org"),
    ("xn--local@example.org", "xn--local@example.org"),  # only the domain is decoded
    ("no-at-sign", "no-at-sign"),
])
def test_unicode_domain(addr: str, expected: str) -> None:
    assert unicode_domain(addr) == expected


# ---------------------------------------------------------------- compose

FIXED_ID = uuid.UUID(int=0x1234)


def composed(**kw: Any) -> Outgoing:
    args: dict[str, Any] = dict(
        sender="support@example.com", sender_name="Example Support", to="ann@example.org",
        to_name="Ann Customer", subject="Re: Order missing [#1]",
        body="We will answer within 4 business hours.\n", date=utc(2026, 11, 2, 10),
        ticket_id=1, in_reply_to="<c1@example.org>", references=["<c1@example.org>"],
        language="en")
    args.update(kw)
    with mock.patch("maild.compose.uuid.uuid4", return_value=FIXED_ID):
        return compose(**args)


# compose's output before internationalised addresses were supported: must not change.
ASCII_BEFORE = (
    b"From: Example Support <support@example.com>\r\nTo: Ann Customer <ann@example.org>\r\n"
    b"Subject: Re: Order missing [#1]\r\nDate: Mon, 02 Nov 2026 10:00:00 +0000\r\n"
    b"Message-ID: <maild.t1.00000000000000000000000000001234@example.com>\r\n"
    b"In-Reply-To: <c1@example.org>\r\nReferences: <c1@example.org>\r\n"
    b"Auto-Submitted: auto-replied\r\nX-Auto-Response-Suppress: All\r\n"
    b'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable'
    b"\r\nMIME-Version: 1.0\r\nContent-Language: en\r\n\r\n"
    b"We will answer within 4 business hours.\r\n")
TURKISH_NAME_BEFORE = (
    b"From: =?utf-8?b?TcO8xZ90ZXJpIERlc3RlxJ9p?= <support@example.com>\r\n"
    b"To: =?utf-8?q?Ay=C5=9Fe_Y=C4=B1lmaz?= <ayse@example.com.tr>\r\n"
    b"Subject: Re: =?utf-8?q?Sipari=C5=9F?= gecikti [#7]\r\n"
    b"Date: Mon, 02 Nov 2026 10:00:00 +0000\r\n"
    b"Message-ID: <maild.t7.00000000000000000000000000001234@example.com>\r\n"
    b"In-Reply-To: <t1@example.com.tr>\r\nReferences: <t0@example.com.tr> <t1@example.com.tr>"
    b"\r\nAuto-Submitted: auto-replied\r\nX-Auto-Response-Suppress: All\r\nMIME-Version: 1.0"
    b'\r\nContent-Type: multipart/alternative;\r\n boundary="BOUNDARY"\r\n'
    b"Content-Language: tr\r\n\r\n--BOUNDARY\r\n"
    b'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable'
    b"\r\n\r\nMerhaba, 4 i=C5=9F saati i=C3=A7inde yan=C4=B1t verece=C4=9Fiz.\r\n\r\n"
    b'--BOUNDARY\r\nContent-Type: text/html; charset="utf-8"\r\n'
    b"Content-Transfer-Encoding: 7bit\r\nMIME-Version: 1.0\r\n\r\n<p>Merhaba</p>\r\n\r\n"
    b"--BOUNDARY--\r\n")


def test_ascii_recipient_message_is_unchanged() -> None:
    """As before the SMTPUTF8 work, but for Content-Language, which was dropped then."""
    assert composed().raw == ASCII_BEFORE
    out = composed(sender_name="Müşteri Desteği", to="ayse@example.com.tr",
                   to_name="Ayşe Yılmaz", subject="Re: Sipariş gecikti [#7]",
                   body="Merhaba, 4 iş saati içinde yanıt vereceğiz.\n", ticket_id=7,
                   in_reply_to="<t1@example.com.tr>", html="<p>Merhaba</p>",
                   references=["<t0@example.com.tr>", "<t1@example.com.tr>"], language="tr")
    assert re.sub(rb"=+\d+==", b"BOUNDARY", out.raw) == TURKISH_NAME_BEFORE


@pytest.mark.parametrize(("to", "name"), [(AYSE, "Ayşe Yılmaz"), (YAMADA, "山田太郎"),
                                          ("ann@例え.jp", "Ann")])
def test_compose_for_an_internationalised_recipient(to: str, name: str) -> None:
    out = composed(to=to, to_name=name, subject="Re: Sipariş gecikti [#1]")
    assert out.recipients == (to,)
    head = out.raw.split(b"\r\n\r\n", 1)[0]
    assert f"To: {name} <{to}>".encode() in head  # UTF-8 header, not punycode or RFC 2047
    assert b"xn--" not in out.raw and b"=?" not in head
    # The stdlib's bytes parser has no RFC 6532 mode: read the UTF-8 as text. A non-ASCII
    # local part is the one "defect" it reports, and RFC 6532 is what makes it legal.
    msg = email.message_from_string(out.raw.decode(), policy=email.policy.SMTPUTF8)
    assert not msg.defects
    assert {type(d).__name__ for d in msg["To"].defects} <= {"NonASCIILocalPartDefect"}
    assert msg["To"].addresses[0].addr_spec == to
    assert msg["Subject"] == "Re: Sipariş gecikti [#1]"
    assert msg.get_content().rstrip() == "We will answer within 4 business hours."
    assert needs_smtputf8(out.raw, out.sender, out.recipients)
    parsed = parse_message(out.raw)  # as the outbox records it on the ticket
    assert parsed.to[0].addr == to and parsed.parse_error is None


def test_a_utf8_message_id_is_answered_in_utf8_not_encoded_words() -> None:
    out = composed(to=AYSE, in_reply_to="<c1@örnek.com.tr>", references=["<c1@örnek.com.tr>"])
    head = out.raw.split(b"\r\n\r\n", 1)[0].decode()
    assert "In-Reply-To: <c1@örnek.com.tr>\r\n" in head and "=?" not in head
    assert parse_message(out.raw).in_reply_to == ("<c1@örnek.com.tr>",)


def test_an_ascii_customer_with_a_utf8_message_id_never_needs_smtputf8() -> None:
    out = composed(in_reply_to="<c1@örnek.com.tr>",
                   references=["<c0@example.org>", "<c1@örnek.com.tr>"])
    assert not needs_smtputf8(out.raw, out.sender, out.recipients)
    parsed = parse_message(out.raw)
    assert parsed.in_reply_to == () and parsed.references == ("<c0@example.org>",)
    assert "[#1]" in parsed.subject


def test_needs_smtputf8_only_for_non_ascii_envelope_or_header() -> None:
    ascii_raw = composed().raw
    assert not needs_smtputf8(ascii_raw, "support@example.com", ["ann@example.org"])
    assert needs_smtputf8(ascii_raw, "support@example.com", [AYSE])
    assert needs_smtputf8("Subject: ş\r\n\r\nx".encode(), "a@b.c", ["d@e.f"])
    assert not needs_smtputf8("Subject: s\r\n\r\nbody ş".encode(), "a@b.c", ["d@e.f"])


# ---------------------------------------------------------------- outbox

class Refusing:
    def __init__(self, error: SendError) -> None:
        self.error = error
        self.calls = 0

    def __call__(self, raw: bytes, sender: str, rcpts: Sequence[str]) -> str:
        self.calls += 1
        raise self.error


def test_smtputf8_unsupported_fails_the_row_with_a_delivery_failed_event(db_url: str) -> None:
    clock = FixedClock(utc(2026, 11, 2, 10))
    sessions = migrated_sessions(db_url)
    ing = Ingestor(sessions, clock, "support@example.com")
    ing.ingest_batch("inbox", "INBOX", 1, [IngestItem(1, raw_mail(frm=f"Ayşe <{AYSE}>"),
                                                      utc(2026, 11, 2, 10))])
    out = composed(to=AYSE, to_name="Ayşe")
    with sessions.begin() as s:
        enqueue(s, out, mailbox_id=1, ticket_id=1, kind="auto_reply", now=clock.now())
    error = SendError(f"{SMTPUTF8_UNSUPPORTED}: SMTP h:25 does not offer SMTPUTF8; not sent",
                      permanent=True, reason=SMTPUTF8_UNSUPPORTED)
    smtp = Refusing(error)
    sender = OutboxSender(sessions, clock, smtp, own_addresses=["support@example.com"])
    assert sender.deliver_due().failed == [out.message_id]
    clock.set(utc(2026, 11, 2, 12))
    assert sender.deliver_due().failed == [] and smtp.calls == 1  # never retried
    with sessions() as s:
        row = s.scalars(select(OutboxRow)).one()
        ticket = show_ticket(s, 1)
    assert row.status == "failed" and (row.last_error or "").startswith(SMTPUTF8_UNSUPPORTED)
    assert ticket["customer"] == AYSE
    failed = [e for e in ticket["events"] if e["kind"] == "delivery_failed"]
    assert len(failed) == 1
    detail = {k: v for k, v in failed[0].items() if k not in ("at", "kind", "actor")}
    assert detail == {"address": AYSE, "status": SMTPUTF8_UNSUPPORTED,
                      "diagnostic": str(error)}
    assert "auto_reply_failed" in [e["kind"] for e in ticket["events"]]


def test_a_plain_permanent_failure_records_no_delivery_failed_event(db_url: str) -> None:
    clock = FixedClock(utc(2026, 11, 2, 10))
    sessions = migrated_sessions(db_url)
    Ingestor(sessions, clock, "support@example.com").ingest_batch(
        "inbox", "INBOX", 1, [IngestItem(1, raw_mail(), utc(2026, 11, 2, 10))])
    with sessions.begin() as s:
        enqueue(s, composed(), mailbox_id=1, ticket_id=1, kind="auto_reply", now=clock.now())
    OutboxSender(sessions, clock, Refusing(SendError("554 no", permanent=True)),
                 own_addresses=["support@example.com"]).deliver_due()
    with sessions() as s:
        kinds = [e["kind"] for e in show_ticket(s, 1)["events"]]
    assert "auto_reply_failed" in kinds and "delivery_failed" not in kinds


def test_the_reply_says_its_language() -> None:
    """Content-Language was set before set_content(), which drops Content-* headers."""
    for html in (None, "<p>Merhaba</p>"):
        msg = email.message_from_bytes(composed(language="tr", html=html).raw,
                                       policy=email.policy.default)
        assert msg["Content-Language"] == "tr"
