"""`maild customers forget ADDRESS`: erase one person from maild's database.

Erased: the text, HTML, subjects, attachment names and raw copies of every message
on their tickets (and of any message they sent elsewhere), their tickets' subjects
and suggestion terms, mail queued or sent to them (queued mail is cancelled), the
quarantined mail that names them, every event detail that carries their address,
name or a comment of theirs; the address and name themselves are replaced by a
pseudonym. Kept: the numbers (times, statuses, counts, scores) the KPIs need.
An audit event `customer_forgotten` records the pseudonym and counts only.

`plan_erasure` says what would be erased (the CLI's confirmation); it writes
nothing. The IMAP mailbox is the administrator's to clean: nothing here touches it.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from maild.privacy.export import find_customer, quarantined_mentioning
from maild.store import repo
from maild.store.models import (
    Customer,
    Event,
    MessageRow,
    MessageSource,
    OutboxRow,
    Ticket,
)

ERASED = "(erased)"
# event detail keys that hold what a person wrote
_TEXT_KEYS = frozenset({"comment", "text", "subject", "body", "diagnostic", "error",
                        "signals"})
log = logging.getLogger("maild.privacy")


@dataclass(frozen=True)
class ErasurePlan:
    customer_id: int
    address: str
    name: str
    tickets: tuple[int, ...]
    messages: int
    outbox_queued: int
    outbox_other: int
    quarantined: int

    def describe(self) -> list[str]:
        return [f"customer {self.address} ({self.name or 'no name'})",
                f"tickets: {', '.join(f'#{t}' for t in self.tickets) or 'none'}",
                f"message bodies and raw copies: {self.messages}",
                f"queued mail to cancel: {self.outbox_queued}; sent mail copies to erase: "
                f"{self.outbox_other}",
                f"quarantined messages naming them: {self.quarantined}"]


def _message_filter(customer: Customer, tickets: list[int]) -> Any:
    return or_(MessageRow.ticket_id.in_(tickets), MessageRow.from_addr == customer.address) \
        if tickets else MessageRow.from_addr == customer.address


def _outbox_filter(customer: Customer, tickets: list[int]) -> Any:
    return or_(OutboxRow.ticket_id.in_(tickets), OutboxRow.recipient == customer.address) \
        if tickets else OutboxRow.recipient == customer.address


def plan_erasure(session: Session, address: str) -> ErasurePlan:
    c = find_customer(session, address)
    if c.erased_at is not None:
        raise_erased(c)
    tickets = list(session.scalars(select(Ticket.id).where(Ticket.customer_id == c.id)
                                   .order_by(Ticket.id)))
    messages = session.scalars(select(MessageRow.id).where(_message_filter(c, tickets))).all()
    outbox = session.execute(select(OutboxRow.status).where(_outbox_filter(c, tickets))).all()
    queued = sum(1 for (status,) in outbox if status in ("queued", "sending"))
    return ErasurePlan(c.id, c.address, c.name, tuple(tickets), len(messages), queued,
                       len(outbox) - queued, len(quarantined_mentioning(session, c.address)))


def raise_erased(c: Customer) -> None:
    from maild.errors import NotFoundError

    raise NotFoundError(f"customer #{c.id} was already forgotten")


def pseudonym() -> str:
    return f"erased-{uuid.uuid4().hex[:16]}@erased.invalid"


class _Scrubber:
    """Replaces the address and the name in strings and JSON values."""

    def __init__(self, address: str, name: str, alias: str) -> None:
        self.needles = [n for n in (address, name) if n and len(n) >= 3]
        self.alias = alias

    def text(self, value: str) -> str:
        low = value.lower()
        if any(n.lower() in low for n in self.needles):
            return self.alias if self.needles[0].lower() in low else ERASED
        return value

    def json(self, value: Any, key: str = "") -> Any:
        if key in _TEXT_KEYS and value:
            return ERASED
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.json(v) for v in value]
        if isinstance(value, dict):
            return {k: self.json(v, k) for k, v in value.items()}
        return value


def forget_customer(session: Session, address: str, now: datetime,
                    actor: str = "cli") -> dict[str, Any]:
    """Erase the customer `address` (see the module docstring); a summary of counts."""
    plan = plan_erasure(session, address)
    c = session.get_one(Customer, plan.customer_id)
    alias = pseudonym()
    scrub = _Scrubber(c.address, c.name, alias)
    tickets = list(plan.tickets)
    messages = _erase_messages(session, c, tickets, scrub)
    cancelled = _erase_outbox(session, c, tickets, scrub)
    for q in quarantined_mentioning(session, c.address):
        q.raw, q.error, q.resolved = b"", ERASED, True
    for t in session.scalars(select(Ticket).where(Ticket.id.in_(tickets))) if tickets else ():
        t.subject = t.normalized_subject = ERASED
        t.suggestions = []
    for e in session.scalars(select(Event).where(Event.ticket_id.in_(tickets))) \
            if tickets else ():
        e.detail = scrub.json(dict(e.detail or {}))
        e.actor = scrub.text(e.actor)
    c.address, c.name, c.erased_at = alias, "", now
    summary = {"pseudonym": alias, "tickets": len(tickets), "messages": messages,
               "outbox_cancelled": cancelled, "quarantined": plan.quarantined}
    repo.add_event(session, None, now, "customer_forgotten", actor=actor,
                   customer_id=c.id, **summary)
    log.info("customer #%d forgotten: now %s; %d ticket(s), %d message(s) erased, %d "
             "queued mail cancelled", c.id, alias, len(tickets), messages, cancelled)
    return summary


def _erase_messages(session: Session, c: Customer, tickets: list[int],
                    scrub: _Scrubber) -> int:
    rows = session.scalars(select(MessageRow).where(_message_filter(c, tickets))).all()
    for m in rows:
        m.text = m.html = ""
        m.subject = ERASED
        m.from_addr = scrub.text(m.from_addr)
        m.from_name = scrub.text(m.from_name)
        m.to_addrs = [scrub.text(a) for a in m.to_addrs or []]
        m.cc_addrs = [scrub.text(a) for a in m.cc_addrs or []]
        m.attachments = [{"size": a.get("size")} for a in m.attachments or []]
        m.in_reply_to = m.references = None
        m.parse_error = ERASED if m.parse_error else None
    ids = [m.id for m in rows]
    for start in range(0, len(ids), repo.IN_CHUNK):
        session.execute(delete(MessageSource).where(
            MessageSource.message_pk.in_(ids[start:start + repo.IN_CHUNK])))
    return len(rows)


def _team_mail_naming(session: Session, address: str) -> list[OutboxRow]:
    """Mail to the team that belongs to no ticket (SLA alerts, escalation notices, the
    digest) and names the customer's address."""
    needle = address.lower().encode()
    return [o for o in session.scalars(select(OutboxRow).where(OutboxRow.ticket_id.is_(None)))
            if needle in (o.raw or b"").lower()]


def _erase_outbox(session: Session, c: Customer, tickets: list[int], scrub: _Scrubber) -> int:
    cancelled = 0
    for o in _team_mail_naming(session, c.address):
        if o.status in ("queued", "sending"):  # not sent yet: it will not be
            o.status, cancelled = "cancelled", cancelled + 1
        o.raw, o.subject = b"", ERASED
    for o in session.scalars(select(OutboxRow).where(_outbox_filter(c, tickets))):
        if o.status in ("queued", "sending"):
            o.status, cancelled = "cancelled", cancelled + 1
            o.last_error = "cancelled: the customer was forgotten"
        elif o.last_error:
            o.last_error = ERASED
        o.raw, o.subject = b"", ERASED
        o.recipient = scrub.text(o.recipient)
        o.recipients = [scrub.text(r) for r in o.recipients or []]
    return cancelled
