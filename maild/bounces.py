"""What a bounce says: which recipients failed, how, and which message bounced.

For recording delivery failures (`delivery_failed` events) once `maild.classify`
has called a message a bounce. RFC 3464 delivery-status fields are read where the
report has them (Final-Recipient / Original-Recipient, Action, Status,
Diagnostic-Code); otherwise flufl.bounce's detectors (Mailman's) find the failed
addresses in the text. Pure: bytes in, a frozen value out; no database. Never
raises: garbage gives empty details.
"""

from __future__ import annotations

import email
import email.parser
import email.policy
import re
from dataclasses import dataclass
from email.message import Message

from flufl.bounce import all_failures

from maild.parse import clean_header, extract_ids

DIAGNOSTIC_MAX = 500
_STATUS_RE = re.compile(r"\b([245])\.\d{1,3}\.\d{1,3}\b")
_MSGID_LINE_RE = re.compile(r"(?im)^[ \t>]*message-id:[ \t]*(<[^<>\s]+>)")
_RETURNED = frozenset({"message/rfc822", "message/global", "text/rfc822-headers"})
_DSN = frozenset({"message/delivery-status", "message/global-delivery-status"})


@dataclass(frozen=True)
class FailedRecipient:
    address: str  # lower-case
    status: str  # DSN Status like "5.1.1", or "" if unknown
    diagnostic: str  # Diagnostic-Code text (or the best line of the body), one line


@dataclass(frozen=True)
class BounceDetails:
    recipients: tuple[FailedRecipient, ...]  # permanent failures only
    delayed: tuple[FailedRecipient, ...]  # temporary: "delivery delayed" warnings
    original_message_ids: tuple[str, ...]  # of the returned original, best source first


EMPTY = BounceDetails((), (), ())


def _parts(msg: Message) -> list[Message]:
    """The bounce's own parts, not the insides of the returned message."""
    out, stack = [], [msg]
    while stack:
        part = stack.pop()
        out.append(part)
        payload = part.get_payload()
        if part.get_content_maintype() == "multipart" and isinstance(payload, list):
            stack.extend(p for p in reversed(payload) if isinstance(p, Message))
    return out


def _text(part: Message) -> str:
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        return ""
    return data.decode(part.get_content_charset() or "utf-8", "replace")


def _field_blocks(part: Message) -> list[Message]:
    """The per-message and per-recipient field groups of a delivery-status part."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    parser = email.parser.HeaderParser(policy=email.policy.compat32)
    return [parser.parsestr(b) for b in re.split(r"\r?\n[ \t]*\r?\n", _text(part)) if b.strip()]


def _address(value: str | None) -> str:
    """`rfc822; Ann@Example.org` -> `ann@example.org`."""
    addr = (value or "").split(";", 1)[-1].strip().strip("<>").lower()
    return addr if "@" in addr else ""


def _one_line(value: str) -> str:
    return clean_header(value)[:DIAGNOSTIC_MAX]


def _from_dsn(parts: list[Message]) -> tuple[list[FailedRecipient], list[FailedRecipient]]:
    failed: list[FailedRecipient] = []
    delayed: list[FailedRecipient] = []
    for part in parts:
        if part.get_content_type() not in _DSN:
            continue
        for block in _field_blocks(part):
            # Original-Recipient is the address as we sent it; Final-Recipient may be
            # a rewritten one (userx@sims-ms-daemon)
            addr = _address(block.get("Original-Recipient")) or \
                _address(block.get("Final-Recipient"))
            if not addr:
                continue
            status = (_STATUS_RE.search(str(block.get("Status", ""))) or [""])[0]
            action = str(block.get("Action", "")).strip().lower()
            rec = FailedRecipient(addr, status, _one_line(str(block.get("Diagnostic-Code", ""))))
            if action == "failed" or (not action and status.startswith("5")):
                failed.append(rec)
            elif action == "delayed" or (not action and status.startswith("4")):
                delayed.append(rec)
    return failed, delayed


def _best_line(text: str, addr: str) -> str:
    """The body line that says why `addr` failed: one naming it with a code, else a code."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for pick in (lambda ln: addr in ln.lower() and re.search(r"\b[45]\d\d\b|[45]\.\d", ln),
                 lambda ln: addr in ln.lower(),
                 lambda ln: re.search(r"\b5\d\d\b|\b5\.\d{1,3}\.\d", ln)):
        for i, line in enumerate(lines):
            if pick(line):
                # "<addr>:" alone on a line: the reason is on the next one (qmail)
                if line.lower().strip("<>:") == addr and i + 1 < len(lines) and \
                        re.match(r"\w", lines[i + 1]):
                    return _one_line(f"{line} {lines[i + 1]}")
                return _one_line(line)
    return ""


def _from_flufl(msg: Message, text: str) -> tuple[list[FailedRecipient], list[FailedRecipient]]:
    if not str(msg.get("From") or "").strip():
        del msg["From"]
        msg["From"] = "<>"  # flufl's Yale detector fails (and logs it) on a missing From
    try:
        temporary, permanent = all_failures(msg)
    except Exception:  # a detector tripping over odd input
        return [], []

    def records(found: frozenset[bytes]) -> list[FailedRecipient]:
        out = []
        for raw in sorted(found):
            addr = raw.decode("ascii", "replace").strip().strip("<>").lower()
            diag = _best_line(text, addr)
            status = _STATUS_RE.search(diag)
            out.append(FailedRecipient(addr, status.group(0) if status else "", diag))
        return out

    return records(permanent), records(temporary)


_PLAIN_RE = re.compile(r"^\s*<([^<>\s@]+@[^<>\s@]+)>:?\s*(.*)$", re.MULTILINE)
_CODE_RE = re.compile(r"\b([45])\d\d\b|\b([45])\.\d{1,3}\.\d{1,3}\b")


def _from_plain_text(text: str) -> tuple[list[FailedRecipient], list[FailedRecipient]]:
    """Postfix's plain-text form (no delivery-status part, as carriers relay it):
    "<addr>: reason ... (552 5.2.2)", the reason maybe on the following lines."""
    failed: list[FailedRecipient] = []
    delayed: list[FailedRecipient] = []
    for found in _PLAIN_RE.finditer(text):
        rest = text[found.start(2):].split("\n\n", 1)[0]  # the paragraph about it
        code = _CODE_RE.search(rest)
        if code is None:
            continue
        status = _STATUS_RE.search(rest)
        rec = FailedRecipient(found.group(1).lower(), status.group(0) if status else "",
                              _one_line(f"<{found.group(1)}>: {rest}"))
        (failed if (code.group(1) or code.group(2)) == "5" else delayed).append(rec)
    return failed, delayed


def _original_ids(msg: Message, parts: list[Message], text: str) -> tuple[str, ...]:
    header_parser = email.parser.HeaderParser(policy=email.policy.compat32)
    ids: list[str] = []
    for part in parts:
        if part.get_content_type() in _RETURNED:
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else \
                header_parser.parsestr(_text(part))
            if isinstance(inner, Message):
                ids.extend(extract_ids(inner.get("Message-ID")))
    if not ids:
        ids.extend(extract_ids(" ".join(_MSGID_LINE_RE.findall(text))))
    if not ids:
        ids.extend(extract_ids(" ".join(
            str(v) for h in ("In-Reply-To", "References") for v in msg.get_all(h) or [])))
    return tuple(dict.fromkeys(ids))


def _dedup(records: list[FailedRecipient]) -> tuple[FailedRecipient, ...]:
    seen: dict[str, FailedRecipient] = {}
    for rec in records:
        seen.setdefault(rec.address, rec)
    return tuple(seen.values())


def bounce_details(raw: bytes) -> BounceDetails:
    """Failed and delayed recipients and the returned message's ids; empty on garbage."""
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.compat32)
        parts = _parts(msg)
        text = "\n".join(_text(p) for p in parts if p.get_content_type() == "text/plain")
        failed, delayed = _from_dsn(parts)
        if not failed and not delayed:
            failed, delayed = _from_flufl(msg, text)
        if not failed and not delayed:
            failed, delayed = _from_plain_text(text)
        return BounceDetails(_dedup(failed), _dedup(delayed), _original_ids(msg, parts, text))
    except Exception:  # never let one odd bounce stop ingest
        return EMPTY
