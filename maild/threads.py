"""Decide which ticket a message belongs to.

Order (first hit wins, and its name is the recorded reason):
1. `references` — In-Reply-To / References name a message we already have;
2. `subject-tag` — the subject carries `[#ID]` of an existing ticket this
   sender takes part in (so a guessed number cannot join a stranger's ticket);
3. `subject-fallback` — same customer, same normalised subject, within the
   window; never for forwards (a forward is a new conversation);
4. `new` — otherwise a new ticket.

Pure: all lookups go through the `ThreadLookup` protocol; no SQL here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from maild.parse import ParsedMessage
from maild.subjects import TAG_RE, strip_prefixes

_WS_RE = re.compile(r"\s+")


def normalize_subject(subject: str) -> str:
    """Subject without Re/Fwd/AW/YNT/… prefixes and ticket tags, case-folded."""
    rest, _ = strip_prefixes(subject)
    rest = TAG_RE.sub(" ", rest)
    return _WS_RE.sub(" ", rest).strip().casefold()[:255]


def original_subject(subject: str) -> str:
    """The subject without Re/Fwd/… prefixes (case kept): a forwarded mail's own subject."""
    return strip_prefixes(subject)[0].strip() or subject


def is_forward(subject: str) -> bool:
    return strip_prefixes(subject)[1]


def ticket_tags(subject: str) -> list[int]:
    return [int(n) for n in TAG_RE.findall(subject)]


class ThreadLookup(Protocol):
    def ticket_for_message_ids(self, message_ids: tuple[str, ...]) -> int | None: ...

    def ticket_participants(self, ticket_id: int) -> set[str] | None: ...

    def recent_ticket(self, customer: str, normalized_subject: str,
                      since: datetime) -> int | None: ...


@dataclass(frozen=True)
class ThreadDecision:
    ticket_id: int | None  # None: open a new ticket
    reason: str


def decide_thread(msg: ParsedMessage, *, counterpart: str, outbound: bool,
                  lookup: ThreadLookup, arrived_at: datetime,
                  window: timedelta, thread_ids: tuple[str, ...] | None = None
                  ) -> ThreadDecision:
    """Where `msg` goes. `counterpart` is the customer's address for this message;
    `thread_ids` replaces the message's own references (a bounce adds the Message-ID
    of the message it returns)."""
    ids = msg.thread_ids if thread_ids is None else thread_ids
    if ids:
        found = lookup.ticket_for_message_ids(ids)
        if found is not None:
            return ThreadDecision(found, "references")
    for tag in ticket_tags(msg.subject):
        participants = lookup.ticket_participants(tag)
        if participants is not None and (outbound or counterpart in participants):
            return ThreadDecision(tag, "subject-tag")
    norm = normalize_subject(msg.subject)
    if norm and counterpart and window > timedelta(0) and not is_forward(msg.subject):
        found = lookup.recent_ticket(counterpart, norm, arrived_at - window)
        if found is not None:
            return ThreadDecision(found, "subject-fallback")
    return ThreadDecision(None, "new")
