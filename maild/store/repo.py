"""Queries and small writes on the store, shared by the services.

Each function takes the open Session it works in; none commits (the caller
owns the transaction). Nothing here parses mail or decides threading.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import false, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from maild.store.models import (
    Customer,
    Event,
    FolderState,
    Mailbox,
    MessageRow,
    OutboxRow,
    Ticket,
)

IN_CHUNK = 500  # values per IN (...): SQLite refuses more than 32,766 variables


def get_or_create_mailbox(session: Session, address: str, now: datetime) -> Mailbox:
    """The mailbox row for `address`, created if missing. At a first start the poller and
    the scheduler's jobs may both create it: the loser of that race reads the winner's."""
    address = address.lower()
    query = select(Mailbox).where(Mailbox.address == address)
    found = session.scalar(query)
    if found is None:
        try:
            with session.begin_nested():
                found = Mailbox(address=address, created_at=now)
                session.add(found)
        except IntegrityError:
            found = session.scalars(query).one()
    return found


def find_customer(session: Session, address: str) -> Customer | None:
    return session.scalar(select(Customer).where(Customer.address == address))


def get_folder_state(session: Session, mailbox_id: int, role: str) -> FolderState | None:
    return session.scalar(select(FolderState).where(
        FolderState.mailbox_id == mailbox_id, FolderState.role == role))


def message_exists(session: Session, mailbox_id: int, message_id: str) -> bool:
    return session.scalar(select(MessageRow.id).where(
        MessageRow.mailbox_id == mailbox_id, MessageRow.message_id == message_id)) is not None


def outbox_has(session: Session, message_id: str) -> bool:
    return session.scalar(select(OutboxRow.id).where(
        OutboxRow.message_id == message_id)) is not None


def ticket_for_failed_recipient(session: Session, mailbox_id: int, address: str,
                                since: datetime) -> int | None:
    """The ticket whose mail to `address` most likely bounced: the newest one maild sent
    there (outbox), else the newest ticket of that customer that the team answered."""
    found = session.scalar(select(OutboxRow.ticket_id).where(
        OutboxRow.mailbox_id == mailbox_id, OutboxRow.recipient == address,
        OutboxRow.ticket_id.is_not(None), OutboxRow.created_at >= since)
        .order_by(OutboxRow.id.desc()).limit(1))
    if found is not None:
        return found
    return session.scalar(select(Ticket.id).join(Customer, Customer.id == Ticket.customer_id)
                          .where(Ticket.mailbox_id == mailbox_id, Customer.address == address,
                                 Ticket.status != "filtered", Ticket.updated_at >= since)
                          .order_by(Ticket.updated_at.desc(), Ticket.id.desc()).limit(1))


def add_event(session: Session, ticket_id: int | None, at: datetime, kind: str,
              actor: str = "maild", **detail: Any) -> Event:
    ev = Event(ticket_id=ticket_id, at=at, kind=kind, actor=actor, detail=detail)
    session.add(ev)
    return ev


def first_customer_message_at(session: Session, ticket_id: int) -> datetime | None:
    """Arrival of the ticket's first customer message (inbound, not automatic)."""
    return session.scalar(select(func.min(MessageRow.arrived_at)).where(
        MessageRow.ticket_id == ticket_id, MessageRow.direction == "in",
        MessageRow.auto == false()))  # "=", not "IS": PostgreSQL's index can use it


def answered_message_at(session: Session, ticket_id: int, message_ids: tuple[str, ...]
                        ) -> datetime | None:
    """Arrival of the customer message a reply answers: the newest of the ticket's
    customer messages named in `message_ids` (In-Reply-To, References), else its first."""
    named = session.scalar(select(func.max(MessageRow.arrived_at)).where(
        MessageRow.ticket_id == ticket_id, MessageRow.direction == "in",
        MessageRow.auto == false(), MessageRow.message_id.in_(message_ids))) \
        if message_ids else None
    return named or first_customer_message_at(session, ticket_id)


def previous_ticket_count(session: Session, customer_id: int, before_ticket: int) -> int:
    return session.scalar(select(func.count(Ticket.id)).where(
        Ticket.customer_id == customer_id, Ticket.id < before_ticket)) or 0


class SqlThreadLookup:
    """`maild.threads.ThreadLookup` over the database, scoped to one mailbox."""

    def __init__(self, session: Session, mailbox_id: int) -> None:
        self.session = session
        self.mailbox_id = mailbox_id

    def ticket_for_message_ids(self, message_ids: tuple[str, ...]) -> int | None:
        by_id: dict[str, int] = {}
        for i in range(0, len(message_ids), IN_CHUNK):  # a hostile References header
            rows = self.session.execute(select(MessageRow.message_id, MessageRow.ticket_id).where(
                MessageRow.mailbox_id == self.mailbox_id,
                MessageRow.message_id.in_(message_ids[i:i + IN_CHUNK])))
            by_id.update({mid: tid for mid, tid in rows})
        for mid in message_ids:  # the caller's order: In-Reply-To first
            if mid in by_id:
                return by_id[mid]
        return None

    def ticket_participants(self, ticket_id: int) -> set[str] | None:
        ticket = self.session.get(Ticket, ticket_id)
        if ticket is None or ticket.mailbox_id != self.mailbox_id:
            return None
        senders = self.session.scalars(select(MessageRow.from_addr).where(
            MessageRow.ticket_id == ticket_id)).all()
        return {ticket.customer.address, *senders}

    def recent_ticket(self, customer: str, normalized_subject: str,
                      since: datetime) -> int | None:
        return self.session.scalar(
            select(Ticket.id).join(Customer, Ticket.customer_id == Customer.id).where(
                Ticket.mailbox_id == self.mailbox_id, Customer.address == customer,
                Ticket.normalized_subject == normalized_subject,
                func.coalesce(Ticket.last_customer_at, Ticket.created_at) >= since,
            ).order_by(Ticket.id.desc()).limit(1))
