"""SQLAlchemy 2.x models: the tables maild keeps, and nothing else.

All times are stored as naive UTC and handed out as aware UTC (`UTCDateTime`).
Migrations in `migrations/` must match these models (a test compares them).
No queries or business logic here: see `maild.store.repo` and the services.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

TICKET_STATUSES = ("new", "open", "pending", "solved", "filtered")
# who wrote a message (maild.classify); machine mail also has a kind
SENDER_CLASSES = ("customer", "agent", "machine")
PRIORITIES = ("low", "normal", "high", "urgent")
# a ticket missed its first- or next-response target (the predicate of ix_tickets_breached)
BREACHED_SQL = "sla_breached OR next_breached"
QUARANTINE_OUTCOMES = ("retried", "dropped")


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, naive UTC stored, aware UTC out."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; maild stores UTC only")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    type_annotation_map: dict[Any, Any] = {datetime: UTCDateTime, dict[str, Any]: JSON}


class Mailbox(Base):
    __tablename__ = "mailboxes"
    id: Mapped[int] = mapped_column(primary_key=True)
    address: Mapped[str] = mapped_column(String(320), unique=True)
    created_at: Mapped[datetime]


class FolderState(Base):
    """IMAP checkpoint of one folder: messages above last_uid are new."""

    __tablename__ = "folder_states"
    __table_args__ = (UniqueConstraint("mailbox_id", "role"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id"))
    role: Mapped[str] = mapped_column(String(16))  # inbox | sent
    name: Mapped[str] = mapped_column(String(255))
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    highest_modseq: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]


class HistoryImport(Base):
    """The history lane of one folder (`maild.history`): mail below `boundary_uid` that
    was in the folder when maild first saw it, imported oldest first behind live mail.
    Every history UID <= `cursor_uid` is stored; `done`/`total` are its progress."""

    __tablename__ = "history_imports"
    __table_args__ = (UniqueConstraint("mailbox_id", "role"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id"))
    role: Mapped[str] = mapped_column(String(16))  # inbox | sent
    folder: Mapped[str] = mapped_column(String(255))
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    boundary_uid: Mapped[int] = mapped_column(BigInteger)  # history: UIDs below it
    cursor_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    since: Mapped[datetime | None]  # only mail that arrived on/after this (import_since)
    total: Mapped[int] = mapped_column(BigInteger, default=0)
    done: Mapped[int] = mapped_column(BigInteger, default=0)
    started_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]


class Customer(Base):
    __tablename__ = "customers"
    id: Mapped[int] = mapped_column(primary_key=True)
    address: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime]
    # `maild tickets recover`: this sender's mail is a customer's, whatever its markers
    trusted: Mapped[bool] = mapped_column(Boolean, default=False)
    # the last permanent delivery failure to this address (no ETA reply for a while)
    bounced_at: Mapped[datetime | None]
    # the customer asked for no more satisfaction surveys (the survey's opt-out link)
    survey_opt_out_at: Mapped[datetime | None]
    # `maild customers forget`: address and name replaced by a pseudonym at this time
    erased_at: Mapped[datetime | None]


class Ticket(Base):
    __tablename__ = "tickets"
    __table_args__ = (
        Index("ix_tickets_status", "status"),
        Index("ix_tickets_customer_subject", "customer_id", "normalized_subject"),
        Index("ix_tickets_created_at", "created_at"),
        Index("ix_tickets_sla_due_at", "sla_due_at"),
        Index("ix_tickets_first_response_at", "first_response_at"),
        Index("ix_tickets_solved_at", "solved_at"),
        Index("ix_tickets_sla_warn_at", "sla_warn_at"),
        Index("ix_tickets_next_due_at", "next_due_at"),
        Index("ix_tickets_assignee", "assignee"),
        # `tickets list --breached`, newest first: only the breached tickets are in it
        Index("ix_tickets_breached", "id", sqlite_where=text(BREACHED_SQL),
              postgresql_where=text(BREACHED_SQL)),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    subject: Mapped[str] = mapped_column(Text)
    normalized_subject: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="new")
    priority: Mapped[str] = mapped_column(String(16), default="normal")
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    sla_policy: Mapped[str | None] = mapped_column(String(64))
    sla_due_at: Mapped[datetime | None]
    sla_breached: Mapped[bool] = mapped_column(Boolean, default=False)
    first_response_at: Mapped[datetime | None]
    # The first response's figures, recorded with it (docs/metrics.md): FRT in seconds
    # from the first customer message, wall clock and business time, and who answered.
    # NULL when not recorded (older rows, or invalidated): `stats` computes them then.
    frt_wall_seconds: Mapped[float | None] = mapped_column(Float)
    frt_business_seconds: Mapped[float | None] = mapped_column(Float)
    first_responder: Mapped[str | None] = mapped_column(String(255))
    agent_replies: Mapped[int] = mapped_column(Integer, default=0)
    assignee: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    last_customer_at: Mapped[datetime | None]
    solved_at: Mapped[datetime | None]
    language: Mapped[str | None] = mapped_column(String(16))
    sla_warn_at: Mapped[datetime | None]
    sla_warned_at: Mapped[datetime | None]
    pending_since: Mapped[datetime | None]
    next_due_at: Mapped[datetime | None]
    next_breached: Mapped[bool] = mapped_column(Boolean, default=False)
    suggestions: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # status `filtered`: the kind of mail that opened it (bounce, auto-reply, bulk,
    # notification, report, spam, agent) and the marker or rule that said so
    filtered_kind: Mapped[str | None] = mapped_column(String(32))
    filtered_reason: Mapped[str | None] = mapped_column(String(255))
    # `[privacy] keep_message_text_days`: bodies and raw copies purged at this time
    text_purged_at: Mapped[datetime | None]

    customer: Mapped[Customer] = relationship()
    messages: Mapped[list[MessageRow]] = relationship(
        back_populates="ticket", order_by="MessageRow.id")


class MessageRow(Base):
    """One message of a ticket, as parsed; its raw bytes are in message_sources."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("mailbox_id", "message_id"),
        # a ticket's messages of one kind in time order (KPIs: replies, waiting)
        Index("ix_messages_ticket_kind_arrived", "ticket_id", "direction", "auto",
              "arrived_at"),
        # one kind of message in time order, covering what `stats` reads of it:
        # the oldest waiting customer message, agent replies per agent
        Index("ix_messages_direction_arrived", "direction", "auto", "arrived_at", "ticket_id",
              "from_addr", "from_name"),
        # machine mail per kind in time order (the digest's and `stats`' filtered counts)
        Index("ix_messages_class_arrived", "sender_class", "arrived_at", "machine_kind"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id"))
    message_id: Mapped[str] = mapped_column(String(998))
    in_reply_to: Mapped[str | None] = mapped_column(Text)
    references: Mapped[str | None] = mapped_column(Text)
    direction: Mapped[str] = mapped_column(String(3))  # in | out
    auto: Mapped[bool] = mapped_column(Boolean, default=False)
    # inbound mail's classification (maild.classify): customer | agent | machine,
    # the machine kind, and the marker that decided; outbound mail: agent or machine
    sender_class: Mapped[str] = mapped_column(String(16), default="customer")
    machine_kind: Mapped[str | None] = mapped_column(String(16))
    class_reason: Mapped[str | None] = mapped_column(String(64))
    from_addr: Mapped[str] = mapped_column(String(320))
    from_name: Mapped[str] = mapped_column(String(255), default="")
    to_addrs: Mapped[list[str]] = mapped_column(JSON, default=list)
    cc_addrs: Mapped[list[str]] = mapped_column(JSON, default=list)
    subject: Mapped[str] = mapped_column(Text, default="")
    date: Mapped[datetime | None]
    received_at: Mapped[datetime | None]
    arrived_at: Mapped[datetime]
    text: Mapped[str] = mapped_column(Text, default="")
    html: Mapped[str] = mapped_column(Text, default="")
    raw_size: Mapped[int] = mapped_column(Integer, default=0)
    attachments: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    parse_error: Mapped[str | None] = mapped_column(Text)
    folder: Mapped[str | None] = mapped_column(String(255))
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger)
    uid: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime]

    ticket: Mapped[Ticket] = relationship(back_populates="messages")


class MessageSource(Base):
    __tablename__ = "message_sources"
    message_pk: Mapped[int] = mapped_column(ForeignKey("messages.id"), primary_key=True)
    raw: Mapped[bytes] = mapped_column(LargeBinary)

    # never set or read: it tells a flush to insert the message before its source
    message: Mapped[MessageRow] = relationship()


class Event(Base):
    """Append-only ticket history: what happened, when, and why."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_ticket_kind_at", "ticket_id", "kind", "at"),
                      Index("ix_events_kind_at", "kind", "at"))
    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(320), default="maild")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    # never set or read: it tells a flush to insert the ticket before its events
    ticket: Mapped[Ticket | None] = relationship()


class Quarantine(Base):
    """A message whose processing failed: kept raw with the error, for replay
    (`maild quarantine retry`). A row is never deleted: `resolved` with its outcome
    (retried into `ticket_id`, or dropped), when and by whom."""

    __tablename__ = "quarantine"
    __table_args__ = (UniqueConstraint("mailbox_id", "folder", "uidvalidity", "uid"),
                      Index("ix_quarantine_resolved", "resolved", "id"))
    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id"))
    folder: Mapped[str] = mapped_column(String(255))
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger)
    uid: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str] = mapped_column(Text)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    at: Mapped[datetime]
    resolved: Mapped[bool] = mapped_column(Boolean, default=False)
    role: Mapped[str | None] = mapped_column(String(16))  # inbox | sent (NULL: older rows)
    internaldate: Mapped[datetime | None]
    retries: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    outcome: Mapped[str | None] = mapped_column(String(16))  # QUARANTINE_OUTCOMES
    resolved_at: Mapped[datetime | None]
    resolved_by: Mapped[str | None] = mapped_column(String(320))
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))


class OutboxRow(Base):
    """A message maild decided to send: written in the deciding transaction,
    sent later, marked sent after the server accepted it. Retries reuse the
    same Message-ID, so a resend after a crash is recognisable downstream."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),
                      Index("ix_outbox_recipient", "kind", "recipient", "created_at"),
                      Index("ix_outbox_kind_created", "kind", "created_at"))
    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id"))
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    kind: Mapped[str] = mapped_column(String(32))  # auto_reply | macro | digest | notice
    message_id: Mapped[str] = mapped_column(String(998), unique=True)
    sender: Mapped[str] = mapped_column(String(320))
    recipient: Mapped[str] = mapped_column(String(320))
    recipients: Mapped[list[str]] = mapped_column(JSON, default=list)
    subject: Mapped[str] = mapped_column(Text, default="")
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    auto: Mapped[bool] = mapped_column(Boolean, default=True)
    # queued|sending|sent|failed|held (held: sent maybe, never marked; not sent again)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    claimed_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    in_sent_folder: Mapped[bool] = mapped_column(Boolean, default=False)
    # applied to the ticket once the server accepts the message: {"status", "actor"}
    on_sent: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)


class Survey(Base):
    """A satisfaction survey (CSAT 1-5 or NPS 0-10) maild sent, or decided not to send,
    for a solved ticket; its answer's score once the customer clicked a link."""

    __tablename__ = "surveys"
    __table_args__ = (UniqueConstraint("ticket_id", "kind"),
                      Index("ix_surveys_customer_kind_at", "customer_id", "kind", "created_at"),
                      Index("ix_surveys_kind_answered", "kind", "answered_at"))
    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    kind: Mapped[str] = mapped_column(String(8))  # csat | nps
    status: Mapped[str] = mapped_column(String(16))  # sent | skipped | answered
    reason: Mapped[str | None] = mapped_column(String(255))  # why skipped
    agent: Mapped[str | None] = mapped_column(String(320))  # who answered the ticket last
    created_at: Mapped[datetime]
    answered_at: Mapped[datetime | None]
    score: Mapped[int | None] = mapped_column(Integer)


class Setting(Base):
    """Values maild generates and keeps (the survey signing secret): key -> text."""

    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class EscalationState(Base):
    """One time-based automation's current episode on one ticket: it fired at
    `fired_at` and fires again only after its conditions stopped holding
    (`cleared_at` set) and hold anew."""

    __tablename__ = "escalation_states"
    __table_args__ = (UniqueConstraint("ticket_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    name: Mapped[str] = mapped_column(String(128))
    fired_at: Mapped[datetime]
    cleared_at: Mapped[datetime | None]
    times: Mapped[int] = mapped_column(Integer, default=1)
