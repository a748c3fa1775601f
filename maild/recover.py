"""`maild tickets recover`: make a wrongly filtered ticket a customer's ticket again.

The ticket's machine-classified messages become customer messages, its status
`new` (or `open` if the team already replied), and its sender is remembered as
trusted: later mail from that address is a customer's whatever markers it
carries. The first-response clock starts at the recovery, not at the message's
arrival: until then nobody was asked to answer it, and a recovery must never
record a breach in the past. Works in the caller's session; never commits.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from maild.calendar import BusinessCalendar
from maild.errors import MaildError, NotFoundError
from maild.sla import set_status, start_clock
from maild.store import repo
from maild.store.models import MessageRow, Ticket


def recover_ticket(session: Session, ticket_id: int, *, calendar: BusinessCalendar,
                   first_response: timedelta, policy: str, warn_fraction: float,
                   now: datetime, actor: str = "cli") -> Ticket:
    ticket = session.get(Ticket, ticket_id)
    if ticket is None:
        raise NotFoundError(f"ticket {ticket_id}: no such ticket")
    if ticket.status != "filtered":
        raise MaildError(f"ticket #{ticket_id} is not filtered (status {ticket.status}): "
                         "nothing to recover")
    kind, reason = ticket.filtered_kind, ticket.filtered_reason
    inbound = session.scalars(select(MessageRow).where(
        MessageRow.ticket_id == ticket.id, MessageRow.direction == "in")).all()
    for row in inbound:
        if row.sender_class == "machine":
            row.auto, row.sender_class = False, "customer"
            row.class_reason = f"recovered ({row.class_reason})"[:64]
    arrivals = [r.arrived_at for r in inbound if not r.auto]
    ticket.last_customer_at = max(arrivals) if arrivals else None
    ticket.customer.trusted = True
    ticket.filtered_kind = ticket.filtered_reason = None
    ticket.sla_policy = policy
    start_clock(ticket, calendar, first_response, now, warn_fraction)
    set_status(session, ticket, "open" if ticket.agent_replies else "new", now, actor=actor,
               reason="recovered")
    repo.add_event(session, ticket.id, now, "recovered", actor=actor, mail_kind=kind, reason=reason,
                   customer=ticket.customer.address, sla_due_at=ticket.sla_due_at.isoformat()
                   if ticket.sla_due_at else None)
    ticket.updated_at = now
    return ticket
