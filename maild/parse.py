"""Turn raw RFC 5322 bytes into one small, frozen, typed value.

`parse_message` never raises: a message mail-parser cannot read still yields a
`ParsedMessage` with `parse_error` set, best-effort headers and the raw text,
so the caller can store it, flag it and move on. This module does no I/O and
knows nothing about tickets, IMAP or the database.
"""

from __future__ import annotations

import contextlib
import email
import email.parser
import email.policy
import hashlib
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from email.header import Header, decode_header, make_header
from email.message import Message
from email.utils import getaddresses
from functools import cached_property
from html.parser import HTMLParser
from typing import Any

import mailparser

from maild.addresses import unicode_domain, usable_address

_QUIET = "not handled"  # mail-parser's warning for parts it skips (text/rfc822-headers of
# every DSN): maild reads those parts itself (`attached`), so the line is noise


class _DropSkippedPartWarnings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return _QUIET not in record.getMessage()


logging.getLogger("mailparser.core").addFilter(_DropSkippedPartWarnings())

MSGID_RE = re.compile(r"<[^<>\s]+>")
_WS_RE = re.compile(r"\s+")


@dataclass(frozen=True)
class Address:
    """One mailbox: display name and lower-cased address."""

    name: str
    addr: str


@dataclass(frozen=True)
class Attachment:
    """Attachment metadata only; the bytes stay in the raw source."""

    filename: str
    content_type: str
    size: int


@dataclass(frozen=True)
class AttachedMessage:
    """Headers of a message carried inside another (message/rfc822, message/global,
    text/rfc822-headers): a forward as attachment, the original in a bounce or report."""

    message_id: str
    from_addr: str
    subject: str


@dataclass(frozen=True)
class ParsedMessage:
    """Everything maild reads from one message, decoded once."""

    message_id: str
    subject: str
    from_addr: str
    from_name: str = ""
    to: tuple[Address, ...] = ()
    cc: tuple[Address, ...] = ()
    reply_to: tuple[Address, ...] = ()
    in_reply_to: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    date: datetime | None = None
    text: str = ""
    html: str = ""
    attachments: tuple[Attachment, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = "text/plain"
    raw_size: int = 0
    message_id_synthetic: bool = False
    parse_error: str | None = None
    defects: tuple[str, ...] = field(default=())
    # Lower-case content types of the message's own MIME parts, top level first; an
    # attached message is one part (its insides belong to that other message).
    part_types: tuple[str, ...] = ()
    attached: tuple[AttachedMessage, ...] = ()
    # the language of the sender's own words, when a parse worker guessed it already
    # (`maild.parsepool`): "" = could not tell (use the default); None = not guessed
    language: str | None = None

    def header(self, name: str) -> str | None:
        """First value of header `name` (case-insensitive), or None."""
        values = self._by_name.get(name.lower())
        return values[0] if values else None

    def header_all(self, name: str) -> list[str]:
        return list(self._by_name.get(name.lower(), ()))

    @cached_property
    def _by_name(self) -> dict[str, tuple[str, ...]]:
        """The headers by lower-case name, built on first use: classification asks for
        dozens of headers per message, and a scan of all of them each time was a tenth
        of a history import's writing time."""
        out: dict[str, list[str]] = {}
        for key, value in self.headers:
            out.setdefault(key.lower(), []).append(value)
        return {key: tuple(values) for key, values in out.items()}

    @property
    def thread_ids(self) -> tuple[str, ...]:
        """In-Reply-To first, then References newest first: the order to try."""
        seen: list[str] = []
        for mid in (*self.in_reply_to, *reversed(self.references)):
            if mid not in seen:
                seen.append(mid)
        return tuple(seen)


def clean_text(value: str) -> str:
    """Drop NUL bytes (PostgreSQL refuses them in text) and lone surrogates."""
    return value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


def clean_header(value: str) -> str:
    """One line, no control characters: safe to store and to echo into headers."""
    return _WS_RE.sub(" ", clean_text(value)).strip()


def decode_header_value(value: Any) -> str:
    if value is None:
        return ""
    raw = _header_text(value)
    if "=?" not in raw:  # no RFC 2047 encoded word: decoding would return it unchanged
        return clean_header(raw)
    try:
        decoded = str(make_header(decode_header(raw))) if raw.isascii() else _decode_words(raw)
    except (ValueError, LookupError, UnicodeError):
        decoded = raw
    return clean_header(decoded)


def _header_text(value: Any) -> str:
    """A header value as text. compat32 hands a value with 8-bit bytes over as a `Header`
    of unknown-8bit bytes: those are UTF-8 (RFC 6532), not text to show as U+FFFD."""
    if not isinstance(value, Header):
        return "" if value is None else str(value)
    return "".join(chunk.decode("utf-8" if charset == "unknown-8bit" else "ascii", "replace")
                   if isinstance(chunk, bytes) else chunk
                   for chunk, charset in decode_header(value))


_NON_ASCII_RE = re.compile(r"([^\x00-\x7f]+)")


def _decode_words(text: str) -> str:
    """Decode the RFC 2047 words in UTF-8 text (RFC 6532). `decode_header` reads ASCII
    only, so each ASCII run is decoded on its own and the UTF-8 runs are kept as they are."""
    out = []
    for i, part in enumerate(_NON_ASCII_RE.split(text)):
        if i % 2 or "=?" not in part:
            out.append(part)
        else:  # decode_header drops the leading white space that separates it from text
            lead = part[:len(part) - len(part.lstrip())]
            out.append(lead + str(make_header(decode_header(part))))
    return "".join(out)


# Longest values kept, as the database's columns are (maild.store.models): an address
# (RFC 5321 allows 254), a display name, a Message-ID (one 998-character line). Longer
# ones are clipped here, so the clipped value is also the key every lookup uses, and the
# message is flagged (OVERLONG); the raw source keeps the whole header.
ADDRESS_MAX, NAME_MAX, MESSAGE_ID_MAX = 320, 255, 998
OVERLONG = "OverlongHeaderValueDefect"


def extract_ids(value: str | None) -> tuple[str, ...]:
    """Message-IDs in a header value, in order, de-duplicated, at most MESSAGE_ID_MAX long."""
    if not value:
        return ()
    out: list[str] = []
    for mid in MSGID_RE.findall(value):
        mid = mid[:MESSAGE_ID_MAX]
        if mid not in out:
            out.append(mid)
    return tuple(out)


def _bounded(addr: str) -> str:
    """`addr` at most ADDRESS_MAX long, still local@domain: the local part gives way."""
    if len(addr) <= ADDRESS_MAX:
        return addr
    local, at, domain = addr.rpartition("@")
    if not at:
        return addr[:ADDRESS_MAX]
    domain = domain[:ADDRESS_MAX // 2]
    return f"{local[:ADDRESS_MAX - len(domain) - 1]}@{domain}"


def _overlong(msg: Message) -> bool:
    """A header that `_base_fields` clips (a Message-ID, or an address or name)."""
    ids = (msg.get("Message-ID"), *(msg.get_all("In-Reply-To") or []),
           *(msg.get_all("References") or []))
    if any(len(mid) > MESSAGE_ID_MAX for v in ids if v for mid in MSGID_RE.findall(str(v))):
        return True
    long_values = [str(v) for header in ("From", "To", "Cc", "Reply-To")
                   for v in msg.get_all(header) or [] if len(str(v)) > NAME_MAX]
    return any(len(clean_header(addr)) > ADDRESS_MAX or len(clean_header(name)) > NAME_MAX
               for value in long_values for name, addr in _pairs(decode_header_value(value)))


def synthetic_message_id(raw: bytes) -> str:
    return f"<{hashlib.sha256(raw).hexdigest()[:40]}@maild.invalid>"


_ANGLE_RE = re.compile(r"([^<>,]*)<([^<>\s@]+@[^<>\s@]+)>")


def _addresses(values: Iterable[str]) -> tuple[Address, ...]:
    out: list[Address] = []
    for value in values:
        decoded = decode_header_value(value)
        for name, addr in _pairs(decoded):
            addr = _bounded(unicode_domain(clean_header(addr).lower()))
            if addr and "@" in addr:
                out.append(Address(clean_header(name)[:NAME_MAX], addr))
    return tuple(out)


def _pairs(value: str) -> list[tuple[str, str]]:
    """(name, address) pairs of one header. A mangled value like `Ann ann@x.com <ann@x.com>`
    (an unquoted @ in the name) makes the stdlib return "Ann ann@x.com" as an address;
    then the <angle> addresses are the ones the sender meant."""
    pairs = getaddresses([value])
    if all(usable_address(clean_header(a)) for _, a in pairs if a):
        return pairs
    angles = [(name.strip().strip('"').strip(), addr) for name, addr in _ANGLE_RE.findall(value)]
    return angles or pairs


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in ("br", "p", "div", "tr", "li"):
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    parser = _TextExtractor()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # HTMLParser is lenient; never let markup stop ingest
        return html
    return re.sub(r"\n{3,}", "\n\n", "".join(parser.parts)).strip()


def _headers(msg: Message) -> tuple[tuple[str, str], ...]:
    return tuple((clean_header(str(k)), decode_header_value(v)) for k, v in msg.items())


def _attachments(items: list[dict[str, Any]]) -> tuple[Attachment, ...]:
    out = []
    for att in items:
        payload = att.get("payload") or ""
        size = len(payload) * 3 // 4 if att.get("binary") else len(str(payload).encode())
        name = clean_header(att.get("safe_filename") or att.get("filename") or "")
        ctype = clean_header(att.get("mail_content_type") or "application/octet-stream")
        out.append(Attachment(name, ctype.lower(), size))
    return tuple(out)


def _base_fields(msg: Message, raw: bytes) -> dict[str, Any]:
    """Header-derived fields, read with the stdlib parser (never fails)."""
    mid_values = extract_ids(_header_text(msg.get("Message-ID")))
    message_id = mid_values[0] if mid_values else synthetic_message_id(raw)
    from_ = _addresses(msg.get_all("From") or [])
    return {
        "message_id": message_id,
        "message_id_synthetic": not mid_values,
        "subject": decode_header_value(msg.get("Subject")),
        "from_addr": from_[0].addr if from_ else "",
        "from_name": from_[0].name if from_ else "",
        "to": _addresses(msg.get_all("To") or []),
        "cc": _addresses(msg.get_all("Cc") or []),
        "reply_to": _addresses(msg.get_all("Reply-To") or []),
        "in_reply_to": extract_ids(" ".join(map(_header_text, msg.get_all("In-Reply-To") or []))),
        "references": extract_ids(" ".join(map(_header_text, msg.get_all("References") or []))),
        "headers": _headers(msg),
        "content_type": clean_header(msg.get_content_type()).lower(),
        "raw_size": len(raw),
        "defects": (*(type(d).__name__ for d in msg.defects),
                    *((OVERLONG,) if _overlong(msg) else ())),
    }


SERIOUS_DEFECTS = frozenset({
    "CloseBoundaryNotFoundDefect", "StartBoundaryNotFoundDefect", "NoBoundaryInMultipartDefect",
    "MultipartInvariantViolationDefect", "InvalidBase64PaddingDefect",
    "InvalidBase64CharactersDefect", "InvalidBase64LengthDefect",
    "MissingHeaderBodySeparatorDefect", "InvalidMultipartContentTransferEncodingDefect",
    OVERLONG})


def _all_defects(msg: Message) -> tuple[str, ...]:
    names: list[str] = []
    for part in msg.walk():
        names.extend(type(d).__name__ for d in part.defects)
    return tuple(dict.fromkeys(names))


_ATTACHED_TYPES = frozenset({"message/rfc822", "message/global", "text/rfc822-headers"})


def _attached_message(part: Message) -> AttachedMessage:
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        inner = payload[0]
    else:  # text/rfc822-headers, message/global, or an encoded message/rfc822: headers only
        data = part.get_payload(decode=True)
        head = data if isinstance(data, bytes) else b""
        inner = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(head)
    ids = extract_ids(inner.get("Message-ID"))
    from_ = _addresses(inner.get_all("From") or [])
    return AttachedMessage(ids[0] if ids else "", from_[0].addr if from_ else "",
                           decode_header_value(inner.get("Subject")))


def _mime_facts(msg: Message) -> dict[str, Any]:
    """`part_types` and `attached`: one walk that does not enter attached messages."""
    types: list[str] = []
    attached: list[AttachedMessage] = []
    stack = [msg]
    while stack:
        part = stack.pop()
        ctype = part.get_content_type()
        types.append(ctype)
        if ctype in _ATTACHED_TYPES:
            attached.append(_attached_message(part))
        elif ctype.startswith("multipart/") and isinstance(payload := part.get_payload(), list):
            stack.extend(p for p in reversed(payload) if isinstance(p, Message))
    return {"part_types": tuple(types), "attached": tuple(attached)}


@dataclass(frozen=True)
class ParseLimits:
    """Beyond these, only the headers are parsed and the message is flagged."""

    max_bytes: int = 25 * 1024 * 1024
    max_parts: int = 500


DEFAULT_LIMITS = ParseLimits()
_BOUNDARY_RE = re.compile(rb"boundary\s*=", re.IGNORECASE)
FALLBACK_TEXT_BYTES = 200_000


def _limit_problem(raw: bytes, limits: ParseLimits) -> str | None:
    if len(raw) > limits.max_bytes:
        return f"message too large ({len(raw)} bytes > {limits.max_bytes}): headers only"
    parts = len(_BOUNDARY_RE.findall(raw))
    if parts > limits.max_parts:
        return f"too many MIME parts ({parts} > {limits.max_parts}): headers only"
    return None


def _headers_only(raw: bytes, problem: str) -> ParsedMessage:
    head, _, body = raw.partition(b"\r\n\r\n") if b"\r\n\r\n" in raw else \
        raw.partition(b"\n\n")
    try:
        msg = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(head)
        base = _base_fields(msg, raw)
    except Exception:  # even the headers are unreadable: keep the bytes, flag it
        base = {"message_id": synthetic_message_id(raw), "message_id_synthetic": True,
                "subject": "", "from_addr": "", "raw_size": len(raw)}
    text = clean_text(body[:FALLBACK_TEXT_BYTES].decode("utf-8", "replace"))
    return ParsedMessage(**base, text=text, parse_error=problem)


def parse_message(raw: bytes, limits: ParseLimits = DEFAULT_LIMITS) -> ParsedMessage:
    """Parse `raw`; on any failure return a flagged best-effort value.

    The stdlib parses the MIME structure once; mail-parser reads that same
    `Message` for the bodies, date and attachments. Malformed MIME that
    mail-parser still reads (a missing closing boundary,
    broken base64) is flagged too: `parse_error` names the defects. Messages
    over the limits, or that break the MIME parser itself (deep nesting), get
    their headers parsed only.
    """
    problem = _limit_problem(raw, limits)
    if problem:
        return _headers_only(raw, problem)
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.compat32)
        base = _base_fields(msg, raw)
    except Exception as exc:  # RecursionError on deep nesting, and others
        return _headers_only(raw, f"MIME parser failed: {type(exc).__name__}")
    base["defects"] = tuple(dict.fromkeys((*_all_defects(msg), *base["defects"])))
    with contextlib.suppress(Exception):  # a part too broken to read: no MIME facts
        base.update(_mime_facts(msg))
    try:
        mp = mailparser.MailParser(msg)  # the same Message: MIME is parsed once
        text = clean_text("\n".join(mp.text_plain))
        html = clean_text("\n".join(mp.text_html))
        date = mp.date if isinstance(mp.date, datetime) else None
        attachments = _attachments(mp.attachments)
    except Exception as exc:  # mail-parser raises many types on broken MIME
        fallback = clean_text(raw[:200_000].decode("utf-8", "replace"))
        return ParsedMessage(**base, text=fallback, parse_error=f"{type(exc).__name__}: {exc}")
    if not text and html:
        text = html_to_text(html)
    serious = [d for d in base["defects"] if d in SERIOUS_DEFECTS]
    error = f"malformed MIME: {', '.join(serious)}" if serious else None
    return ParsedMessage(**base, date=date, text=text, html=html, attachments=attachments,
                         parse_error=error)
