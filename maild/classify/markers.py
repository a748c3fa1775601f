"""The markers of machine mail, as data: one table per kind, checked in order.

A row is `Marker(name, description, header, test)`. With a `header` (a name, or a
prefix ending in `*` such as `List-*`), `test` gets each value of that header and
the row hits when one value passes; with `header=""`, `test` gets the whole
message and the context. Several rows may share a name (one reason read from
several headers); they must then be adjacent. `docs/rules.md` lists the tables.

Only facts already in `ParsedMessage` are read, plus flufl.bounce's heuristics on
the decoded text (gated, see `_flufl_bounce`). Nothing here touches I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from email.message import Message
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from flufl.bounce import all_failures

from maild.parse import ParsedMessage
from maild.subjects import FORWARD_PREFIX_RE, REPLY_PREFIXES

if TYPE_CHECKING:
    from maild.classify import ClassifyContext


class Marker(NamedTuple):
    name: str
    description: str
    header: str  # a header name, a "Prefix-*", or "" for a whole-message test
    test: Callable[..., bool]  # (value) -> bool for a header; (msg, ctx) -> bool for ""


_COMMENT_RE = re.compile(r"\([^()]*\)")
_FALSE_VALUES = frozenset({"no", "false", "0"})


def first_token(value: str) -> str:
    """Lower-cased value without RFC 5322 comments and without `;` parameters."""
    return _COMMENT_RE.sub("", value).split(";", 1)[0].strip().lower()


def _token_in(*values: str) -> Callable[[str], bool]:
    wanted = frozenset(values)
    return lambda value: first_token(value) in wanted


def _token_not_in(*values: str) -> Callable[[str], bool]:
    unwanted = frozenset(values)
    return lambda value: first_token(value) not in unwanted


def _present(value: str) -> bool:
    """Set to anything but an explicit no (`X-Autoreply: no`)."""
    return first_token(value) not in _FALSE_VALUES


def _any(value: str) -> bool:
    return True


def _search(pattern: str) -> Callable[[str], bool]:
    regex = re.compile(pattern, re.IGNORECASE)
    return lambda value: regex.search(value) is not None


# --- addresses ------------------------------------------------------------------------------

_MACHINE_WORD = (
    r"(?:mailer[-_]?daemon|post[-_]?master|no[-_.]?reply|do[-_.]?not[-_.]?reply|dont[-_.]?reply"
    r"|bounces?|notifications?)"
)
# The word alone, or as a prefix/suffix separated by punctuation or followed by digits:
# "noreply", "no-reply-123", "team.noreply", "bounces-42-x"; never "reply" or "bounced".
MACHINE_LOCAL_RE: Final = re.compile(rf"^(?:.*[-_.=])?{_MACHINE_WORD}(?:[-_.=0-9].*)?$")
# Who sends delivery reports: only together with a failure subject (a bounce marker).
_DAEMON_LOCAL_RE = re.compile(
    r"^(?:mailer[-_]?daemon|post[-_]?master|mdaemon|ndr|mail[-_.]?delivery[-_.]?system"
    r"|mail[-_.]?delivery[-_.]?subsystem)$")
_ABUSE_LOCAL_RE = re.compile(
    r"^(?:abuse|fbl|feedback|feedbackloop|feedback-loop|arf|complaints?|scomp)"
    r"(?:[-_.+].*)?$")
OWN_MESSAGE_ID_PREFIX: Final = "<maild."  # maild.compose.make_message_id


def local_part(addr: str) -> str:
    """Local part, lower-case, without a `+tag` sub-address."""
    return addr.rsplit("@", 1)[0].lower().split("+", 1)[0]


def unplussed(addr: str) -> str:
    local, _, domain = addr.lower().rpartition("@")
    return f"{local.split('+', 1)[0]}@{domain}" if local else addr.lower()


def reply_targets(msg: ParsedMessage) -> list[str]:
    """Where an answer would go: From and every Reply-To address."""
    targets = [a.addr for a in msg.reply_to]
    if msg.from_addr:
        targets.insert(0, msg.from_addr)
    return targets


def _return_path(msg: ParsedMessage, ctx: ClassifyContext) -> str | None:
    value = ctx.return_path if ctx.return_path is not None else msg.header("Return-Path")
    return None if value is None else _COMMENT_RE.sub("", value).strip(" <>\t").lower()


def _null_sender(msg: ParsedMessage, ctx: ClassifyContext) -> bool:
    """Null envelope sender; Sendmail writes it as <MAILER-DAEMON> (or @its host)."""
    value = _return_path(msg, ctx)
    return value is not None and (value == "" or local_part(value) == "mailer-daemon")


def _machine_sender(msg: ParsedMessage, ctx: ClassifyContext) -> bool:
    return any(MACHINE_LOCAL_RE.match(local_part(a)) for a in reply_targets(msg))


def _daemon_sender(msg: ParsedMessage) -> bool:
    return bool(msg.from_addr) and bool(_DAEMON_LOCAL_RE.match(local_part(msg.from_addr)))


# --- subjects -------------------------------------------------------------------------------

def _casefold(subject: str) -> str:
    """Case-folded, Turkish İ without its combining dot: "İzindeyim" -> "izindeyim"."""
    return subject.casefold().replace("\u0307", "")


# Reply prefixes only: carriers answer "Re: Undelivered Mail..."; a forward ("Fwd:") is
# a person passing a report on, so it never matches.
_REPLY_PREFIX = REPLY_PREFIXES  # maild.subjects: the one list
_FORWARD_RE = FORWARD_PREFIX_RE
_FAILURE_PHRASE = (
    r"(?:undeliver(?:ed|able)|returned mail|failure notice|failed mail"
    r"|mail delivery (?:failed|failure|problem|warning|system)|delivery (?:status notification"
    r"|notification: delivery has failed|has failed|fail(?:ed|ure)|report|problem|warning"
    r"|delayed)|(?:mail|message) (?:not delivered|could not be delivered|delivery failure)"
    r"|non[- ]?delivery|delayed mail|warning: message|mail system error|could not send"
    r"|permanent delivery failure|\[postmaster\]|teslim edilemedi|teslim edilemiyor"
    r"|iletilemedi|nicht zustellbar|unzustellbar)")
FAILURE_SUBJECT_RE: Final = re.compile(_REPLY_PREFIX + _FAILURE_PHRASE)
_FAILURE_ANYWHERE_RE = re.compile(r"\b" + _FAILURE_PHRASE)
# Anchored at the start, no prefixes skipped: "Re: out of office hours" is a person.
# A bare word ("Out of office", "İzindeyim") counts only as the whole subject or when
# followed by a separator, never in the middle of a sentence.
AUTOREPLY_SUBJECT_RE: Final = re.compile(
    r"^(?:(?:automatic reply|auto[- ]?reply|auto[- ]?response|autoresponder"
    r"|automatische antwort|réponse automatique|respuesta automática|risposta automatica"
    r"|otomatik (?:yan[ıi]t|cevap))\s*:"
    r"|(?:out of (?:the )?office|ofis d[ıi]ş[ıi]nda|ofiste değilim|izindeyim"
    r"|abwesenheitsnotiz|auto[- ]?reply|otomatik (?:yan[ıi]t|cevap))"
    r"(?:\s*$|\s*[:\-–(\[/!.]|\s+(?:auto[- ]?)?reply\b|\s+notice\b))")
_REPORT_SUBJECT_RE = re.compile(r"^report domain:\s*\S+.*\bsubmitter:\s*\S+", re.IGNORECASE)


def _failure_subject(msg: ParsedMessage) -> bool:
    return bool(FAILURE_SUBJECT_RE.match(_casefold(msg.subject)))


def _mentions_failure(msg: ParsedMessage) -> bool:
    """A failure phrase anywhere in a subject that is not a forward: "RE: <subject> :
    non remis (delivery failed)" (a gateway); "Fwd: Undelivered Mail" is a person."""
    subject = _casefold(msg.subject)
    return not _FORWARD_RE.match(subject) and bool(_FAILURE_ANYWHERE_RE.search(subject))


def _autoreply_subject(value: str) -> bool:
    return bool(AUTOREPLY_SUBJECT_RE.match(_casefold(value)))


# --- MIME structure -------------------------------------------------------------------------

_REPORT_TYPE_RE = re.compile(r"\breport-type\s*=\s*\"?([a-z0-9_.+-]+)", re.IGNORECASE)
_DSN_PARTS = frozenset({"message/delivery-status", "message/global-delivery-status"})
_REPORT_PARTS = frozenset({
    "multipart/report", "message/disposition-notification",
    "message/global-disposition-notification", "message/feedback-report"})
_ARCHIVE_PARTS = frozenset({"application/zip", "application/gzip", "application/x-gzip",
                            "application/x-zip-compressed", "application/x-zip"})
_RETURNED_PARTS = frozenset({"message/rfc822", "message/global", "text/rfc822-headers"})


def _report_types(msg: ParsedMessage) -> set[str]:
    """report-type parameters of the top-level Content-Type, even a malformed one."""
    return {m.group(1).lower() for v in msg.header_all("Content-Type")
            for m in _REPORT_TYPE_RE.finditer(v)}


def _delivery_status(msg: ParsedMessage, ctx: ClassifyContext) -> bool:
    return bool(_DSN_PARTS.intersection(msg.part_types)) or "delivery-status" in \
        _report_types(msg) or msg.content_type in _DSN_PARTS


def _other_report(msg: ParsedMessage, ctx: ClassifyContext) -> bool:
    return bool(_REPORT_PARTS.intersection(msg.part_types)) or bool(_report_types(msg)) or \
        msg.content_type in _REPORT_PARTS


def _returned_message(msg: ParsedMessage, ctx: ClassifyContext) -> bool:
    """A failure subject with the original attached, from a gateway with a plain name."""
    return _failure_subject(msg) and bool(_RETURNED_PARTS.intersection(msg.part_types))


def _flufl_bounce(msg: ParsedMessage, ctx: ClassifyContext) -> bool:
    """flufl.bounce's detectors (Mailman's) find a failed recipient in the text.

    They assume their input is a bounce (they run on a list's -bounces address) and
    would match a bounce a customer pasted into a question, so they only run on mail
    that already looks like a delivery report: a daemon sender, a null envelope sender
    or a failure phrase in a subject that is no forward. The MIME-structured DSN is
    `report-content`'s job; flufl gets the headers and the decoded text."""
    if not (_daemon_sender(msg) or _null_sender(msg, ctx) or _mentions_failure(msg)):
        return False
    probe = Message()
    for key, value in msg.headers:
        if not key.lower().startswith(("content-", "mime-")):
            probe[key] = value
    if not msg.from_addr:
        del probe["From"]
        probe["From"] = "<>"  # flufl's Yale detector fails (and logs it) on a missing From
    probe["Content-Type"] = "text/plain"
    probe.set_payload(msg.text)
    try:
        temporary, permanent = all_failures(probe)
    except Exception:  # a detector tripping over odd input is no bounce
        return False
    return bool(temporary or permanent)


def _daemon_failure(msg: ParsedMessage, ctx: ClassifyContext) -> bool:
    return _daemon_sender(msg) and _failure_subject(msg)


def _abuse_report(msg: ParsedMessage, ctx: ClassifyContext) -> bool:
    """An abuse desk or feedback loop returning one of maild's own messages."""
    if not msg.from_addr or not _ABUSE_LOCAL_RE.match(local_part(msg.from_addr)):
        return False
    own = {unplussed(a) for a in ctx.own_addresses}
    return any(a.message_id.startswith(OWN_MESSAGE_ID_PREFIX) or
               (a.from_addr and unplussed(a.from_addr) in own) for a in msg.attached)


def _dmarc_aggregate(msg: ParsedMessage, ctx: ClassifyContext) -> bool:
    return bool(_REPORT_SUBJECT_RE.match(msg.subject)) and \
        bool(_ARCHIVE_PARTS.intersection(msg.part_types))


def _tls_report(msg: ParsedMessage, ctx: ClassifyContext) -> bool:
    return any(t.startswith("application/tlsrpt") for t in msg.part_types) or \
        msg.header("TLS-Report-Domain") is not None or \
        msg.header("TLS-Report-Submitter") is not None


# --- the tables -----------------------------------------------------------------------------

_VENDOR = "a vendor's auto-reply header ({})"
_AUTOREPLY_HEADERS = ("X-Autoreply", "X-Autorespond", "X-Autoresponder", "X-Auto-Reply",
                      "X-AutoReply-From", "X-Mail-Autoreply", "X-Autogenerated",
                      "X-MS-Exchange-Inbox-Rules-Loop")

BOUNCE: Final[tuple[Marker, ...]] = (
    Marker("report-content", "delivery status notification (message/delivery-status, "
           "report-type=delivery-status)", "", _delivery_status),
    Marker("mailer-daemon", "mailer-daemon/postmaster sender with a delivery-failure subject",
           "", _daemon_failure),
    Marker("flufl-bounce", "flufl.bounce finds failed recipients in a delivery report's text",
           "", _flufl_bounce),
    Marker("returned-message", "delivery-failure subject with the returned message attached",
           "", _returned_message),
)
REPORT: Final[tuple[Marker, ...]] = (
    Marker("report-content", "read receipt, feedback or TLS report (multipart/report, "
           "message/disposition-notification, message/feedback-report)", "", _other_report),
    Marker("feedback-report", "ARF feedback report (Feedback-Type header)", "Feedback-Type",
           _any),
    Marker("abuse-report", "abuse desk / feedback loop returning a message maild sent", "",
           _abuse_report),
    Marker("dmarc-aggregate", "DMARC aggregate report ('Report Domain: ... Submitter: ...' "
           "with a zip/gzip attachment)", "", _dmarc_aggregate),
    Marker("tls-report", "SMTP TLS report (application/tlsrpt+json/+gzip, TLS-Report-Domain)",
           "", _tls_report),
)
AUTO_REPLY: Final[tuple[Marker, ...]] = (
    Marker("auto-submitted", "RFC 3834 Auto-Submitted: auto-replied", "Auto-Submitted",
           _token_in("auto-replied")),
    *(Marker("vendor-autoreply", _VENDOR.format(h), h, _present) for h in _AUTOREPLY_HEADERS),
    Marker("vendor-autoreply", _VENDOR.format("Exchange mailbox rules agent / OOF"),
           "X-MS-Exchange-Generated-Message-Source",
           _search(r"mailbox rules agent|auto[- ]?repl|\boof\b")),
    Marker("vendor-autoreply", _VENDOR.format("iCloud X-Apple-Action: VACATION"),
           "X-Apple-Action", _token_in("vacation")),
    Marker("precedence", "Precedence: auto_reply", "Precedence",
           _token_in("auto_reply", "auto-reply")),
    Marker("precedence", "X-Precedence: auto_reply", "X-Precedence",
           _token_in("auto_reply", "auto-reply")),
    Marker("autoreply-subject", "vacation subject (Automatic reply:, Out of Office, "
           "Otomatik yanıt:, Abwesenheitsnotiz...)", "Subject", _autoreply_subject),
)
BULK: Final[tuple[Marker, ...]] = (
    *(Marker("list-headers", f"mailing-list or newsletter header ({h})", h, _any)
      for h in ("List-*", "Mailing-List", "X-Mailing-List", "X-MLServer", "X-ML-Name",
                "X-Mailman-*")),
    Marker("precedence", "Precedence: bulk, list or junk", "Precedence",
           _token_in("bulk", "list", "junk")),
    Marker("precedence", "X-Precedence: bulk, list or junk", "X-Precedence",
           _token_in("bulk", "list", "junk")),
    Marker("bulk-campaign", "bulk-mail campaign header (Mailchimp X-Campaign, X-CampaignID)",
           "X-Campaign*", _any),
)
NOTIFICATION: Final[tuple[Marker, ...]] = (
    Marker("auto-submitted", "RFC 3834 Auto-Submitted with any value but 'no' "
           "(auto-generated, auto-notified...)", "Auto-Submitted", _token_not_in("no")),
    Marker("machine-sender", "From or Reply-To is a machine (mailer-daemon, postmaster, "
           "noreply, notifications...)", "", _machine_sender),
    Marker("empty-return-path", "null envelope sender (Return-Path <> or <MAILER-DAEMON>)",
           "", _null_sender),
)
TABLES: Final[tuple[tuple[str, tuple[Marker, ...]], ...]] = (
    ("bounce", BOUNCE), ("report", REPORT), ("auto-reply", AUTO_REPLY), ("bulk", BULK),
    ("notification", NOTIFICATION))


def hits(marker: Marker, msg: ParsedMessage, ctx: Any) -> bool:
    """Does `marker` hit `msg`? The one place a row is interpreted."""
    if not marker.header:
        return bool(marker.test(msg, ctx))
    if marker.header.endswith("*"):
        prefix = marker.header[:-1].lower()
        values = [v for k, v in msg.headers if k.lower().startswith(prefix)]
    else:
        values = msg.header_all(marker.header)
    return any(marker.test(v) for v in values)


def check_tables(tables: tuple[tuple[str, tuple[Marker, ...]], ...]) -> None:
    """Refuse a malformed table at import: a name repeated apart, a row with no description."""
    for kind, table in tables:
        seen: list[str] = []
        for marker in table:
            if not marker.description:
                raise ValueError(f"marker {kind}/{marker.name} has no description")
            if marker.name in seen and seen[-1] != marker.name:
                raise ValueError(f"marker {kind}/{marker.name}: rows of one name must be adjacent")
            seen.append(marker.name)


check_tables(TABLES)
