"""Build the outgoing messages maild sends: threaded, tagged, header-safe.

Every message gets its final Message-ID here (carrying the ticket id, so a
reply that lost its headers can still be traced), In-Reply-To/References to
the message it answers, and `[#ID]` in the subject. Automatic mail carries
the RFC 3834 headers from `AUTO_HEADERS`. Header values never contain CR/LF:
they are collapsed to one line before Python's email policy checks them again.
A message to or from an internationalised address (`ayşe@örnek.com.tr`) is built
with the SMTPUTF8 policy (RFC 6532: UTF-8 headers; an address is never punycoded,
a Message-ID never RFC 2047-encoded); all other mail keeps the plain SMTP policy
and RFC 2047 encoded words, and leaves a UTF-8 Message-ID out of In-Reply-To and
References (the `[#ID]` tag still threads the answer) so that it never needs SMTPUTF8.
No templates are rendered and nothing is sent here.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP, SMTPUTF8
from email.utils import format_datetime, formataddr

from maild.subjects import TAG_RE, strip_reply_prefixes

# RFC 3834 section 5: mark automatic responses; Microsoft clients honour the second.
AUTO_HEADERS = {"Auto-Submitted": "auto-replied", "X-Auto-Response-Suppress": "All"}
_CTRL_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]+")  # C0, C1, Unicode line breaks
MAX_REFERENCES = 20


def one_line(value: str) -> str:
    """Collapse CR, LF and other control characters: safe in any header."""
    return _CTRL_RE.sub(" ", value).strip()


def make_message_id(domain: str, ticket_id: int | None) -> str:
    prefix = f"maild.t{ticket_id}" if ticket_id else "maild"
    return f"<{prefix}.{uuid.uuid4().hex}@{one_line(domain) or 'maild.invalid'}>"


def reply_subject(subject: str, ticket_id: int) -> str:
    """'Re: <subject without old tags and reply prefixes> [#ID]'."""
    base = strip_reply_prefixes(one_line(TAG_RE.sub("", subject)).strip())
    return f"Re: {base or '(no subject)'} [#{ticket_id}]"


@dataclass(frozen=True)
class Outgoing:
    """A composed message ready for the outbox."""

    message_id: str
    sender: str
    recipients: tuple[str, ...]
    subject: str
    raw: bytes


def _mailbox(name: str, addr: str, utf8: bool) -> str | Address:
    """A From/To value; with `utf8` an `Address`, which the SMTPUTF8 policy writes in
    UTF-8 (`formataddr` refuses a non-ASCII local part and would punycode the domain)."""
    if not utf8:
        return formataddr((one_line(name), addr))
    local, _, domain = addr.rpartition("@")
    return Address(display_name=one_line(name), username=local, domain=domain)


def compose(*, sender: str, sender_name: str, to: str, to_name: str, subject: str, body: str,
            date: datetime, ticket_id: int | None, in_reply_to: str | None = None,
            references: Sequence[str] = (), automatic: bool = True,
            language: str | None = None, extra_headers: dict[str, str] | None = None,
            html: str | None = None) -> Outgoing:
    utf8 = not (sender.isascii() and to.isascii())
    if not utf8:  # a UTF-8 Message-ID must not make an ASCII customer's reply need
        # SMTPUTF8 (a server without it would refuse the answer): drop it, [#ID] threads
        in_reply_to = in_reply_to if in_reply_to and in_reply_to.isascii() else None
        references = [r for r in references if r.isascii()]
    msg = EmailMessage(policy=SMTPUTF8 if utf8 else SMTP)
    domain = sender.rpartition("@")[2]
    message_id = make_message_id(domain, ticket_id)
    msg["From"] = _mailbox(sender_name, sender, utf8)
    msg["To"] = _mailbox(to_name, one_line(to), utf8)
    msg["Subject"] = one_line(subject)
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = message_id
    if in_reply_to:
        msg["In-Reply-To"] = one_line(in_reply_to)
    refs = [one_line(r) for r in references][-MAX_REFERENCES:]
    if refs:
        msg["References"] = " ".join(refs)
    if automatic:
        for key, value in AUTO_HEADERS.items():
            msg[key] = value
    for key, value in (extra_headers or {}).items():
        msg[one_line(key)] = one_line(value)
    msg.set_content(body.replace("\r\n", "\n"), charset="utf-8", cte="quoted-printable")
    if html is not None:
        msg.add_alternative(html, subtype="html", charset="utf-8")
    if language:  # after the content: set_content() drops every Content-* header before it
        msg["Content-Language"] = one_line(language)
    return Outgoing(message_id, sender, (one_line(to),), one_line(subject), msg.as_bytes())
