"""Reply to a ticket with a macro, and change a ticket's status, tags and assignee.

The one service behind `maild reply`, the drafts maild places and command
mail: it finds the customer's last message, renders the macro in the sandbox
(`maild.macros.render`), composes a threaded reply (In-Reply-To and
References to that message, `[#ID]` in the subject) and queues it in the
outbox as a human reply (`auto=False`: it counts as an agent reply once it is
sent), then applies the macro's actions: tags and assignee at once, a status
change once the server accepts the reply (the outbox row carries it), recording
a `status` event {"from", "to"} for every status change. Works inside the caller's transaction
and never commits; it sends nothing itself (the outbox sender does), does no
IMAP, and never prints.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from maild import sla
from maild.automation import Automation
from maild.calendar import BusinessCalendar
from maild.compose import Outgoing, compose
from maild.errors import MaildError, NotFoundError
from maild.eta_wording import describe_eta
from maild.macros import Macro, RenderContext, render_macro, strip_reply
from maild.outbox import enqueue
from maild.parse import MSGID_RE, parse_message
from maild.store import repo
from maild.store.models import Mailbox, MessageRow, MessageSource, Ticket

#: Statuses an agent may set (by macro action, CLI or command mail).
AGENT_STATUSES: tuple[str, ...] = ("open", "pending", "solved")


@dataclass(frozen=True)
class Agent:
    """Who replies: `name` shows in the reply (From and `agent.name`)."""

    name: str
    email: str = ""


@dataclass(frozen=True)
class ReplyTarget:
    """The customer message a reply answers, and where the reply goes."""

    message_id: str | None
    references: tuple[str, ...]
    to: str
    to_name: str
    text: str


@dataclass(frozen=True)
class PreparedReply:
    """A rendered macro reply for one ticket, not yet queued."""

    ticket_id: int
    mailbox_id: int
    sender: str
    sender_name: str
    to: str
    to_name: str
    subject: str
    body: str
    in_reply_to: str | None
    references: tuple[str, ...]
    macro: Macro

    def with_body(self, body: str) -> PreparedReply:
        """The same reply with another body (e.g. after `--edit`)."""
        return dataclasses.replace(self, body=body if body.endswith("\n") else body + "\n")

    def as_text(self) -> str:
        """The reply as a human reads it: a few headers, a blank line, the body."""
        head = [f"From: {self.sender_name} <{self.sender}>", f"To: {self.to_name} <{self.to}>",
                f"Subject: {self.subject}"]
        if self.in_reply_to:
            head.append(f"In-Reply-To: {self.in_reply_to}")
        return "\n".join(head) + "\n\n" + self.body

    def as_json(self) -> dict[str, Any]:
        return {"ticket": self.ticket_id, "macro": self.macro.name,
                "language": self.macro.language, "from": self.sender, "to": self.to,
                "subject": self.subject, "in_reply_to": self.in_reply_to, "body": self.body}


@dataclass(frozen=True)
class TicketChange:
    """What to do to a ticket besides mailing: every field is optional."""

    status: str | None = None
    tags: tuple[str, ...] = ()
    assignee: str | None = None
    untags: tuple[str, ...] = ()
    unassign: bool = False


def get_ticket(session: Session, ticket_id: int) -> Ticket:
    ticket = session.get(Ticket, ticket_id)
    if ticket is None:
        raise NotFoundError(f"ticket {ticket_id}: no such ticket")
    return ticket


def customer_message(session: Session, ticket: Ticket) -> MessageRow | None:
    """The ticket's last human inbound message, preferring the customer's own."""
    rows = session.scalars(select(MessageRow).where(
        MessageRow.ticket_id == ticket.id, MessageRow.direction == "in",
        MessageRow.auto.is_(False)).order_by(MessageRow.arrived_at, MessageRow.id)).all()
    own = [r for r in rows if r.from_addr == ticket.customer.address] or list(rows)
    return own[-1] if own else None


def reply_target(session: Session, ticket: Ticket) -> ReplyTarget:
    """Answer the customer's last message (its Reply-To if it had one)."""
    row = customer_message(session, ticket)
    if row is None:
        return ReplyTarget(None, (), ticket.customer.address, ticket.customer.name, "")
    to, to_name = row.from_addr or ticket.customer.address, row.from_name
    source = session.get(MessageSource, row.id)
    if source is not None:
        parsed = parse_message(source.raw)
        if parsed.reply_to:
            to, to_name = parsed.reply_to[0].addr, parsed.reply_to[0].name or to_name
    refs = tuple(MSGID_RE.findall(row.references or ""))
    return ReplyTarget(row.message_id, (*refs, row.message_id), to, to_name, row.text or "")


def eta_texts(auto: Automation, ticket: Ticket, language: str, now: datetime) -> tuple[str, str]:
    """(`eta.text`, `eta.due`) while the first response is still due, else empty."""
    due = ticket.sla_due_at
    policy = auto.policies.get(ticket.sla_policy or "default") or auto.policies.get("default")
    if due is None or ticket.first_response_at is not None or policy is None or due <= now:
        return "", ""
    return (describe_eta(due, policy.first_response, language, auto.timezone, now),
            due.isoformat())


def prepare_reply(session: Session, auto: Automation, ticket_id: int, macro_name: str, *,
                  agent: Agent, now: datetime, language: str | None = None) -> PreparedReply:
    """Render `macro_name` for the ticket; raises NotFoundError / TemplateError."""
    ticket = get_ticket(session, ticket_id)
    settings = auto.settings
    macro = auto.macros.get(macro_name, language or ticket.language, settings.default_language)
    target = reply_target(session, ticket)
    mailbox = session.get_one(Mailbox, ticket.mailbox_id)
    eta_text, eta_due = eta_texts(auto, ticket, macro.language, now)
    rendered = render_macro(macro, RenderContext(
        ticket_id=ticket.id, ticket_subject=ticket.subject, ticket_status=ticket.status,
        customer_name=target.to_name or ticket.customer.name, customer_email=target.to,
        agent_name=agent.name, agent_email=agent.email, eta_text=eta_text, eta_due=eta_due,
        last_message=strip_reply(target.text, macro.language), company_name=settings.company,
        mailbox_address=mailbox.address))
    return PreparedReply(ticket.id, mailbox.id, mailbox.address,
                         agent.name or settings.sender_name, target.to, target.to_name,
                         rendered.subject, rendered.body, target.message_id, target.references,
                         macro)


def compose_reply(reply: PreparedReply, now: datetime,
                  extra_headers: Mapping[str, str] | None = None) -> Outgoing:
    """The reply as a message: threaded, tagged, and NOT marked automatic."""
    return compose(sender=reply.sender, sender_name=reply.sender_name, to=reply.to,
                   to_name=reply.to_name, subject=reply.subject, body=reply.body, date=now,
                   ticket_id=reply.ticket_id, in_reply_to=reply.in_reply_to,
                   references=reply.references, automatic=False,
                   language=reply.macro.language, extra_headers=dict(extra_headers or {}))


@dataclass(frozen=True)
class SentReply:
    """A queued macro reply: its Message-ID and what its actions changed, in words."""

    message_id: str
    to: str
    done: tuple[str, ...]


def send_reply(session: Session, reply: PreparedReply, *, now: datetime, actor: str,
               change: TicketChange | None = None,
               calendar: BusinessCalendar | None = None) -> SentReply:
    """Queue the reply (kind `macro`, a human reply) and apply the macro's actions.

    `change` adds to the macro's own actions; its status wins over the macro's. Tags
    and assignee apply now; a status change waits for the reply (the outbox applies it
    when the server accepts the reply, and withholds it with an event if the reply
    fails for good): the ticket never says solved over an unsent answer.
    """
    out = compose_reply(reply, now)
    extra = change or TicketChange()
    actions = reply.macro.actions
    status = extra.status or actions.status
    if status is not None and status not in AGENT_STATUSES:
        raise ValueError(f"status {status!r} is not one of {', '.join(AGENT_STATUSES)}")
    enqueue(session, out, mailbox_id=reply.mailbox_id, ticket_id=reply.ticket_id,
            kind="macro", now=now, auto=False,
            on_sent={"status": status, "actor": actor} if status else None)
    repo.add_event(session, reply.ticket_id, now, "macro", actor=actor, name=reply.macro.name,
                   language=reply.macro.language, message_id=out.message_id)
    done = apply_change(session, get_ticket(session, reply.ticket_id), TicketChange(
        tags=(*actions.tags, *extra.tags), assignee=extra.assignee), now=now, actor=actor,
        calendar=calendar)
    if status is not None:
        done.insert(0, f"status {status} once the reply is sent")
    return SentReply(out.message_id, reply.to, tuple(done))


def apply_change(session: Session, ticket: Ticket, change: TicketChange, *, now: datetime,
                 actor: str, calendar: BusinessCalendar | None = None) -> list[str]:
    """Apply `change`, recording events; returns what changed, in words."""
    done: list[str] = []
    if change.status is not None and set_status(session, ticket, change.status, now=now,
                                                actor=actor, calendar=calendar):
        done.append(f"status {change.status}")
    added = add_tags(session, ticket, change.tags, now=now, actor=actor)
    done += [f"tag {t}" for t in added]
    removed = remove_tags(session, ticket, change.untags, now=now, actor=actor)
    done += [f"untag {t}" for t in removed]
    assignee = None if change.unassign else change.assignee
    if (change.unassign or assignee is not None) and assignee != ticket.assignee:
        repo.add_event(session, ticket.id, now, "assigned", actor=actor,
                       **{"from": ticket.assignee, "to": assignee})
        ticket.assignee = assignee
        done.append(f"assigned {assignee}" if assignee else "unassigned")
    ticket.updated_at = max(ticket.updated_at, now)
    return done


def change_ticket(session: Session, ticket_id: int, change: TicketChange, *, now: datetime,
                  actor: str, calendar: BusinessCalendar | None = None) -> list[str]:
    """A change by hand (`maild tickets set`); a filtered ticket's status is not changed
    here (`maild tickets recover` makes it a customer's ticket first)."""
    ticket = get_ticket(session, ticket_id)
    if change.status is not None and ticket.status == "filtered":
        raise MaildError(f"ticket #{ticket_id} is filtered ({ticket.filtered_kind}): run "
                         f"`maild tickets recover {ticket_id}` before changing its status")
    return apply_change(session, ticket, change, now=now, actor=actor, calendar=calendar)


def set_status(session: Session, ticket: Ticket, status: str, *, now: datetime, actor: str,
               calendar: BusinessCalendar | None = None) -> bool:
    """Move the ticket to `status` (open|pending|solved); False if it is already there.

    `maild.sla.set_status` does the work: the `status` event, solved_at, and the
    SLA clock's pause/resume around pending (given the business `calendar`).
    """
    if status not in AGENT_STATUSES:
        raise ValueError(f"status {status!r} is not one of {', '.join(AGENT_STATUSES)}")
    if ticket.status == status:
        return False
    sla.set_status(session, ticket, status, now, actor=actor, calendar=calendar)
    return True


def add_tags(session: Session, ticket: Ticket, tags: Sequence[str], *, now: datetime,
             actor: str) -> list[str]:
    """Add the tags the ticket does not have yet; returns those added."""
    current = list(ticket.tags or [])
    added = [t for t in dict.fromkeys(tags) if t not in current]
    if added:
        ticket.tags = [*current, *added]
        repo.add_event(session, ticket.id, now, "tags", actor=actor, added=added)
    return added


def remove_tags(session: Session, ticket: Ticket, tags: Sequence[str], *, now: datetime,
                actor: str) -> list[str]:
    """Remove those of `tags` the ticket has; returns those removed."""
    current = list(ticket.tags or [])
    removed = [t for t in dict.fromkeys(tags) if t in current]
    if removed:
        ticket.tags = [t for t in current if t not in removed]
        repo.add_event(session, ticket.id, now, "tags", actor=actor, removed=removed)
    return removed
