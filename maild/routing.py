"""Route one message before it is threaded: direction, counted or not, whose ticket.

The classification (`maild.classify`) says who wrote a message; this module
turns that into what storing it means:

- mail in Sent or from one of maild's own addresses is outbound; maild's own
  automatic mail (its Message-ID form `<maild.…>` and `Auto-Submitted`) is
  recognised even in a fresh database and may only join a ticket, never open one;
- machine mail is stored `auto` (outside every count) and opens only a
  `filtered` ticket; a bounce also threads by the Message-ID it returns;
- an agent's mail that goes to a customer is an agent reply on that customer's
  ticket; an agent forwarding a customer's mail opens the ticket for the original
  sender; other agent mail (to the team only, command mail) is a note: `auto`;
- a survey answer (the subject of one of maild's survey links: `[#ID] csat=N key=…`)
  is stored `auto` on its ticket, before any other handling: it never opens or reopens
  a ticket, never counts as a customer follow-up and never gets a reply;
- the rest is a customer's.

Pure: no database, no clock; the writer (`maild.tickets`) asks and acts.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from maild.bounces import BounceDetails, bounce_details
from maild.classify import (
    AGENT,
    CUSTOMER,
    MACHINE,
    Classification,
    ClassifyContext,
    classify,
)
from maild.parse import ParsedMessage
from maild.surveys.links import SurveyAnswer, parse_answer
from maild.threads import is_forward

MAILD_ID_RE = re.compile(r"^<maild\.(?:t\d+\.)?[0-9a-f]{32}@", re.IGNORECASE)
# the header block a mail client puts above a forwarded message, in the languages
# maild answers in and the clients' defaults; the first From-like line after it
_FORWARD_MARK_RE = re.compile(
    r"^[ \t>]*(?:-{2,}|_{2,})?\s*(?:forwarded message|original message|begin forwarded message"
    r"|iletilen ileti|ileti(?:len)? mesaj|orijinal mesaj|weitergeleitete nachricht"
    r"|ursprüngliche nachricht|message transféré|mensaje reenviado)",
    re.IGNORECASE | re.MULTILINE)
_FROM_LINE_RE = re.compile(
    r"^[ \t>*]*(?:from|kimden|gönderen|von|de|da)\s*:\s*\**\s*(?P<value>.+)$",
    re.IGNORECASE | re.MULTILINE)
_ADDR_RE = re.compile(r"<?([^\s<>\"'():;,\[\]]+@[^\s<>\"'():;,\[\]]+\.[^\s<>\"'():;,\[\]]+)>?")


@dataclass(frozen=True)
class Route:
    """How to store a message. `skip`: maild's own mail that threads nowhere."""

    outbound: bool
    automatic: bool
    counterpart: str
    classification: Classification
    thread_ids: tuple[str, ...] = ()
    customer_name: str = ""
    only_join: bool = False        # never open a ticket (maild's own mail)
    filtered: bool = False         # a new ticket for it is `filtered`
    filtered_kind: str | None = None
    forwarded_by: str | None = None  # an agent's forward: the agent's address
    bounce: BounceDetails | None = field(default=None, compare=False)
    survey: SurveyAnswer | None = None  # an answer to a survey link (maild.surveys)


@dataclass(frozen=True)
class RouteContext:
    own: frozenset[str]
    classify: ClassifyContext
    is_command: Callable[[ParsedMessage], bool] = lambda _parsed: False


def is_maild_mail(parsed: ParsedMessage) -> bool:
    """maild's own automatic mail: its Message-ID form and RFC 3834 Auto-Submitted."""
    submitted = (parsed.header("Auto-Submitted") or "no").split(";")[0].strip().lower()
    return bool(MAILD_ID_RE.match(parsed.message_id)) and submitted != "no"


def counterpart_of(parsed: ParsedMessage, outbound: bool, own: frozenset[str]) -> str:
    """The customer's address: the sender of inbound mail, the recipient of ours."""
    if not outbound:
        return parsed.from_addr
    for addr in (*parsed.to, *parsed.cc):
        if addr.addr not in own:
            return addr.addr
    return ""


def forwarded_sender(parsed: ParsedMessage) -> tuple[str, str] | None:
    """(address, name) of the original sender of a forwarded message: the attached
    message's From, else the first From line below the client's forward header."""
    for attached in getattr(parsed, "attached", ()):
        if attached.from_addr:
            return attached.from_addr.lower(), ""
    mark = _FORWARD_MARK_RE.search(parsed.text)
    if mark is None and not is_forward(parsed.subject):
        return None
    line = _FROM_LINE_RE.search(parsed.text, mark.end() if mark else 0)
    if line is None:
        return None
    found = _ADDR_RE.search(line.group("value"))
    if found is None:
        return None
    name = line.group("value")[:found.start()].strip().strip('"*').strip()
    return found.group(1).lower().rstrip("."), name


def route_message(parsed: ParsedMessage, role: str, ctx: RouteContext,
                  raw: bytes = b"", auto: bool | None = None) -> Route:
    """Where and how `parsed` (from folder role inbox|sent) is stored."""
    if role == "sent" or parsed.from_addr in ctx.own:
        return _ours(parsed, ctx, auto)
    found = classify(parsed, ctx.classify)
    if found.sender == MACHINE:
        return _machine(parsed, found, raw)
    answer = parse_answer(parsed.subject)
    if answer is not None:
        cls = Classification(found.sender, None, "survey-answer",
                             "an answer to a satisfaction survey link")
        return Route(False, True, parsed.from_addr, cls, customer_name=parsed.from_name,
                     only_join=True, survey=answer)
    if found.sender == AGENT:
        return _agent(parsed, found, ctx)
    return Route(False, False, parsed.from_addr, found, customer_name=parsed.from_name)


def _ours(parsed: ParsedMessage, ctx: RouteContext, auto: bool | None) -> Route:
    """Sent by the shared mailbox: an agent's reply, or maild's own automatic mail."""
    counterpart = counterpart_of(parsed, True, ctx.own)
    if auto is None and is_maild_mail(parsed):
        cls = Classification(MACHINE, None, "maild", "maild's own automatic mail")
        return Route(True, True, counterpart, cls, only_join=True)
    automatic = is_automatic(parsed) if auto is None else auto
    cls = Classification(MACHINE, None, "auto-submitted", "automatic mail we sent") \
        if automatic else Classification(AGENT, None, "own-address", "sent by the team")
    return Route(True, automatic, counterpart, cls)


def _machine(parsed: ParsedMessage, found: Classification, raw: bytes) -> Route:
    details = bounce_details(raw) if found.kind == "bounce" and raw else None
    extra = details.original_message_ids if details else ()
    ids = tuple(dict.fromkeys((*parsed.thread_ids, *extra)))
    return Route(False, True, parsed.from_addr, found, thread_ids=ids,
                 customer_name=parsed.from_name, filtered=True, filtered_kind=found.kind,
                 bounce=details)


def _agent(parsed: ParsedMessage, found: Classification, ctx: RouteContext) -> Route:
    team = ctx.classify
    external = [a.addr for a in (*parsed.to, *parsed.cc)
                if a.addr not in ctx.own and a.addr not in team.agent_addresses
                and a.addr.rpartition("@")[2] not in team.company_domains]
    if ctx.is_command(parsed):
        return Route(False, True, parsed.from_addr, found, filtered=True,
                     filtered_kind="agent")
    if external:  # to a customer, support in Cc: an agent reply on the customer's ticket
        return Route(True, False, external[0], found)
    original = forwarded_sender(parsed)
    if original is not None and original[0] not in ctx.own and \
            original[0] not in team.agent_addresses:
        cls = Classification(CUSTOMER, None, "agent-forward",
                             f"forwarded by {parsed.from_addr}", "forwarded-by-agent")
        return Route(False, False, original[0], cls, customer_name=original[1],
                     forwarded_by=parsed.from_addr)
    return Route(False, True, parsed.from_addr, found, filtered=True, filtered_kind="agent")


def is_automatic(parsed: ParsedMessage) -> bool:
    value = (parsed.header("Auto-Submitted") or "no").split(";")[0].strip().lower()
    return value != "no"
