"""JSON-ready views of tickets for the CLI (`tickets list`, `tickets show`).

Read-only: builds plain dicts from the store; the field names are a contract
(DESIGN.md "Interfaces that must hold"). No writes, no formatting for humans.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, select, text
from sqlalchemy.orm import Session

from maild.errors import NotFoundError
from maild.store.models import BREACHED_SQL, Customer, Event, MessageRow, Ticket


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _counts(session: Session, ids: list[int]) -> dict[int, int]:
    if not ids:
        return {}
    rows = session.execute(select(MessageRow.ticket_id, func.count(MessageRow.id)).where(
        MessageRow.ticket_id.in_(ids), MessageRow.auto.is_(False)).group_by(
        MessageRow.ticket_id)).all()
    return {tid: n for tid, n in rows}


def ticket_summary(ticket: Ticket, customer: str, message_count: int) -> dict[str, Any]:
    return {
        "id": ticket.id,
        "subject": ticket.subject,
        "customer": customer,
        "status": ticket.status,
        "priority": ticket.priority,
        "tags": list(ticket.tags or []),
        "message_count": message_count,
        "created_at": iso(ticket.created_at),
        "first_response_at": iso(ticket.first_response_at),
        "sla_due_at": iso(ticket.sla_due_at),
        "sla_breached": bool(ticket.sla_breached),
        "agent_replies": ticket.agent_replies,
        "assignee": ticket.assignee,
    }


@dataclass(frozen=True)
class TicketFilter:
    """What `tickets list` asks for; every condition is served by an index."""

    status: str | None = None
    limit: int | None = None
    assignee: str | None = None
    customer: str | None = None
    breached: bool = False  # missed its first- or next-response target
    at_risk: bool = False  # first response still due, past its warning time
    now: datetime | None = None  # the clock `at_risk` is judged by


def _conditions(f: TicketFilter) -> list[ColumnElement[bool]]:
    # machine mail's tickets only when asked for: they are nobody's work
    where: list[ColumnElement[bool]] = [
        Ticket.status == f.status if f.status else Ticket.status != "filtered"]
    if f.assignee is not None:
        where.append(Ticket.assignee == f.assignee)
    if f.customer is not None:
        where.append(Customer.address == f.customer.strip().lower())
    if f.breached:  # written as the partial index's predicate, so the index serves it
        where.append(and_(text(f"({BREACHED_SQL})")))
    if f.at_risk:
        if f.now is None:
            raise ValueError("at_risk needs now")
        # a range on ix_tickets_sla_due_at: only tickets not due yet are read. The upper
        # bound is there for SQLite's planner (a one-sided range loses to scanning by id);
        # no response target is a year long.
        where += [Ticket.sla_due_at > f.now, Ticket.sla_due_at < f.now + timedelta(days=366),
                  Ticket.sla_warn_at <= f.now, Ticket.first_response_at.is_(None),
                  Ticket.status.in_(("new", "open"))]
    return where


def list_tickets(session: Session, status: str | None = None, limit: int | None = None,
                 f: TicketFilter | None = None) -> list[dict[str, Any]]:
    """Tickets newest first (by id: the order they were opened in)."""
    f = f or TicketFilter(status=status, limit=limit)
    query = select(Ticket, Customer.address).join(Customer).where(
        *_conditions(f)).order_by(Ticket.id.desc())
    if f.limit:
        query = query.limit(f.limit)
    rows = session.execute(query).all()
    counts = _counts(session, [t.id for t, _ in rows])
    return [ticket_summary(t, addr, counts.get(t.id, 0)) for t, addr in rows]


def message_view(m: MessageRow) -> dict[str, Any]:
    return {
        "direction": m.direction, "from": m.from_addr, "from_name": m.from_name,
        "to": list(m.to_addrs or []), "date": iso(m.date), "arrived_at": iso(m.arrived_at),
        "message_id": m.message_id, "subject": m.subject, "text": m.text, "auto": m.auto,
        "class": m.sender_class, "kind": m.machine_kind, "class_reason": m.class_reason,
        "attachments": list(m.attachments or []), "parse_error": m.parse_error,
    }


def show_ticket(session: Session, ticket_id: int) -> dict[str, Any]:
    ticket = session.get(Ticket, ticket_id)
    if ticket is None:
        raise NotFoundError(f"ticket {ticket_id}: no such ticket")
    out = ticket_summary(ticket, ticket.customer.address, _counts(session, [ticket.id]).get(
        ticket.id, 0))
    out["language"] = ticket.language
    out["sla_policy"] = ticket.sla_policy
    out["suggestions"] = list(ticket.suggestions or [])
    out["filtered"] = {"kind": ticket.filtered_kind, "reason": ticket.filtered_reason} \
        if ticket.status == "filtered" else None
    out["messages"] = [message_view(m) for m in ticket.messages]
    events = session.scalars(select(Event).where(Event.ticket_id == ticket_id).order_by(
        Event.at, Event.id)).all()
    out["events"] = [{"at": iso(e.at), "kind": e.kind, "actor": e.actor, **(e.detail or {})}
                     for e in events]
    return out
