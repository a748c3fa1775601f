"""Hostile input: property tests for parsing, subject normalisation and
threading, and pathological messages (deep nesting, huge attachment, 10,000
recipients, NUL bytes, header injection, truncation) that must each give a
stored, flagged message: never a crash, never a stall."""

from __future__ import annotations

import base64
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maild.clock import FixedClock
from maild.compose import compose, one_line
from maild.ingest import IngestItem, Ingestor
from maild.parse import ParseLimits, parse_message
from maild.threads import is_forward, normalize_subject
from maild.views import show_ticket
from tests.builders import migrated_sessions, raw_mail, utc

SAMPLE = raw_mail(body="Merhaba, şifremi unuttum. Yardım eder misiniz?")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4000))
def test_parse_never_raises_on_random_bytes(raw: bytes) -> None:
    p = parse_message(raw)
    assert p.message_id.startswith("<") and "\x00" not in p.text


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_parse_survives_mutations_of_a_real_message(data: st.DataObject) -> None:
    raw = bytearray(SAMPLE)
    for _ in range(data.draw(st.integers(1, 20))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        op = data.draw(st.sampled_from(["flip", "cut", "nul", "dup"]))
        if op == "flip":
            raw[pos] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del raw[pos:]
            if not raw:
                raw = bytearray(b"x")
        elif op == "nul":
            raw.insert(pos, 0)
        else:
            raw[pos:pos] = raw[pos:pos + 50]
    p = parse_message(bytes(raw))
    assert "\x00" not in p.subject + p.text + p.from_addr


@given(st.text(max_size=300))
def test_normalize_subject_is_idempotent_and_single_line(subject: str) -> None:
    once = normalize_subject(subject)
    assert normalize_subject(once) == once or normalize_subject(once) == normalize_subject(
        normalize_subject(once))
    assert "\n" not in once and "\r" not in once and len(once) <= 255


@given(st.text(max_size=100))
def test_reply_prefix_does_not_change_normal_form(subject: str) -> None:
    base = normalize_subject(subject)
    assert normalize_subject(f"Re: {subject}") == base or not base.strip()
    assert not is_forward(f"Re: {subject}")


@given(st.text(max_size=200), st.text(max_size=200))
def test_composed_headers_stay_single_line(name: str, subject: str) -> None:
    out = compose(sender="support@example.com", sender_name=name, to="a@example.org",
                  to_name=name, subject=subject, body="x", date=utc(2026, 11, 2),
                  ticket_id=1)
    head = out.raw.split(b"\r\n\r\n", 1)[0].decode("ascii", "replace")
    for line in head.split("\r\n"):
        assert line.startswith((" ", "\t")) or ":" in line  # no injected header lines
    assert "\r" not in one_line(subject) and "\n" not in one_line(subject)


def nested(depth: int) -> bytes:
    opening = b"".join(f"Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n"
                       .encode() for i in range(depth))
    closing = b"".join(f"--b{i}--\r\n".encode() for i in reversed(range(depth)))
    return (b"From: a@example.org\r\nSubject: nested\r\nMessage-ID: <n@x>\r\n" + opening +
            b"Content-Type: text/plain\r\n\r\nhi\r\n" + closing)


def big_attachment(mb: int) -> bytes:
    data = base64.encodebytes(random.Random(1).randbytes(mb * 1024 * 1024))
    return (b"From: a@example.org\r\nSubject: big\r\nMessage-ID: <big@x>\r\nContent-Type: "
            b"multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee "
            b"attached\r\n--b\r\nContent-Type: application/octet-stream; name=big.bin\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" + data + b"\r\n--b--\r\n")


HOSTILE = {
    "nested-2000": (nested(2000), "too many MIME parts"),
    "attachment-50MB": (big_attachment(50), "message too large"),
    "recipients-10000": (b"From: a@example.org\r\nTo: " + ", ".join(
        f"u{i}@example.org" for i in range(10000)).encode() +
        b"\r\nSubject: many\r\nMessage-ID: <r@x>\r\n\r\nhi\r\n", None),
    "nul-bytes": (b"From: a@example.org\x00\r\nSubject: a\x00b\r\nMessage-ID: <z@x>\r\n\r\n"
                  b"\x00\x00body", None),
    "header-injection": (b"From: a@example.org\r\nSubject: =?utf-8?q?hi=0D=0ABcc:_x@evil?=\r\n"
                         b"Message-ID: <h@x>\r\n\r\nbody", None),
    "truncated-mime": (SAMPLE.replace(b"text/plain", b"multipart/mixed; boundary=zz")[:200],
                       None),
    "overlong-headers": (("From: \"" + "N" * 300 + "\" <" + "a" * 400 + "@example.org>\r\n"
                          "Subject: long\r\nMessage-ID: <" + "i" * 1200 + "@x>\r\n\r\nhi\r\n"
                          ).encode(), "OverlongHeaderValueDefect"),
    "wrong-charset": (raw_mail(body="x").replace(b"utf-8", b"klingon-8") +
                      "şğı".encode("cp1254"), None),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_message_is_stored_flagged_or_clean(db_url: str, name: str) -> None:
    raw, flag = HOSTILE[name]
    ing = Ingestor(migrated_sessions(db_url), FixedClock(utc(2026, 11, 2)),
                   "support@example.com", limits=ParseLimits(25 * 1024 * 1024, 500))
    res = ing.ingest_batch("inbox", "INBOX", 1, [IngestItem(1, raw, utc(2026, 11, 2))])
    assert (res.stored, res.quarantined) == (1, 0)
    with ing.sessions() as s:
        ticket = show_ticket(s, 1)
    if flag:
        assert flag in (ticket["messages"][0]["parse_error"] or "")
    assert "\n" not in ticket["subject"] and "\r" not in ticket["subject"]
