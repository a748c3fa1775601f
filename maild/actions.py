"""Carry out a Plan for a freshly stored inbound message, in its transaction.

Sets priority, tags, SLA policy and due time, language and suggestions on the
ticket; records a `rules` event naming the matched rules; and either queues
the ETA auto-reply in the outbox or records `auto_reply_suppressed` with the
reason (loop guard, rule, unauthenticated Reply-To, rate limit: one per address
per window, `per_domain_per_hour` per recipient domain, `global_per_hour` in
all). The decision itself is made by `maild.automation.plan_message`; nothing
is sent from here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from maild.automation import Automation, Plan, plan_message
from maild.clock import Clock
from maild.compose import compose
from maild.macros.render import RenderContext, render_macro
from maild.metrics import note, reason_label
from maild.outbox import enqueue
from maild.parse import ParsedMessage
from maild.sla import restart_on_reopen, set_status, start_clock, start_next_response
from maild.store import repo
from maild.store.after_commit import log_after_commit
from maild.store.models import Customer, Mailbox, OutboxRow, Ticket
from maild.tickets import StoredMessage

log = logging.getLogger("maild.actions")
#: Told each Plan and why its ETA reply does not go out (None: it is queued).
PlanObserver = Callable[[Plan, "str | None"], None]


def rate_limit_reason(session: Session, auto: Automation, recipient: str,
                      now: datetime) -> str | None:
    """Why an ETA reply to `recipient` must not go out now, or None."""
    bounced = session.scalar(select(Customer.bounced_at).where(Customer.address == recipient))
    hold = timedelta(hours=auto.settings.after_bounce_hours)
    if bounced is not None and now - bounced < hold:
        return f"recipient-bounced (our mail to it bounced at {bounced.isoformat()}; " \
               f"autoreply.after_bounce_hours = {auto.settings.after_bounce_hours})"
    window = now - timedelta(hours=auto.settings.per_sender_hours)
    recent = session.scalar(select(func.count(OutboxRow.id)).where(
        OutboxRow.kind == "auto_reply", OutboxRow.recipient == recipient,
        OutboxRow.created_at >= window))
    if recent:
        return f"rate-limit-sender (one per {auto.settings.per_sender_hours} h)"

    last_hour = session.scalars(select(OutboxRow.recipient).where(
        OutboxRow.kind == "auto_reply", OutboxRow.created_at >= now - timedelta(hours=1))).all()
    domain = recipient.rpartition("@")[2]
    cap = auto.settings.per_domain_per_hour
    if cap and sum(1 for r in last_hour if r.rpartition("@")[2] == domain) >= cap:
        return f"rate-limit-domain ({cap} per hour to {domain})"
    if len(last_hour) >= auto.settings.global_per_hour:
        return f"rate-limit-global ({auto.settings.global_per_hour} per hour)"
    return None


def apply_plan(session: Session, auto: Automation, ticket: Ticket, plan: Plan, is_new: bool,
               arrived: datetime, at: datetime, *, reopened: bool = False) -> None:
    d = plan.decision
    if is_new or d.source_of("priority") != "default":
        ticket.priority = d.priority
    ticket.tags = list(dict.fromkeys([*(ticket.tags or []), *d.tags]))
    if is_new:
        ticket.sla_policy = plan.sla_policy
        start_clock(ticket, auto.calendar, auto.policies[plan.sla_policy].first_response,
                    arrived, auto.warn_fraction)
        ticket.language = plan.language
        ticket.suggestions = list(plan.suggestions)
    elif ticket.sla_policy in auto.policies:
        policy = auto.policies[ticket.sla_policy]
        if reopened:  # a new target from the reopening message (DESIGN.md: Reopen)
            restart_on_reopen(ticket, auto.calendar, policy.first_response,
                              policy.next_response, arrived, auto.warn_fraction)
        else:
            start_next_response(ticket, auto.calendar, policy.next_response, arrived)
    if (d.spam or d.ignore) and ticket.status != "filtered":
        filter_ticket(session, ticket, "spam" if d.spam else "ignored",
                      f"rule:{d.source_of('spam' if d.spam else 'ignore')}", at)
    if d.matched:
        repo.add_event(session, ticket.id, at, "rules", matched=list(d.matched),
                       priority=ticket.priority, tags=list(d.tags))
    if plan.verdict.automated:
        repo.add_event(session, ticket.id, at, "auto_submitted", reason=plan.verdict.reason)


def filter_ticket(session: Session, ticket: Ticket, kind: str, reason: str,
                  at: datetime) -> None:
    """Take a ticket out of the backlog, the SLA clock and the KPIs: status `filtered`."""
    ticket.filtered_kind, ticket.filtered_reason = kind, reason[:255]
    ticket.sla_due_at = ticket.sla_warn_at = ticket.next_due_at = None
    set_status(session, ticket, "filtered", at, reason=reason)


class AutomationHandler:
    """Ingest handler: rules and the ETA auto-reply for inbound mail."""

    name = "automation"

    def __init__(self, automation: Automation, clock: Clock,
                 observe: PlanObserver | None = None) -> None:
        self.auto = automation
        self.clock = clock
        self.observe = observe  # the dry run reads the Plan here

    def handle(self, session: Session, stored: StoredMessage, parsed: ParsedMessage) -> None:
        if stored.outbound:
            if stored.role == "inbox":  # our own address writing into the INBOX
                repo.add_event(session, stored.ticket.id, self.clock.now(),
                               "auto_reply_suppressed", reason="loop-guard:own-address",
                               message_id=parsed.message_id)
                note(session, "auto_replies", "suppressed", "loop-guard:own-address")
            return
        if stored.row.auto:  # machine mail, a note among the team: no rules, no reply
            self._not_a_customer(session, stored, parsed)
            return
        ticket = stored.ticket
        mailbox = session.get_one(Mailbox, ticket.mailbox_id)
        previous = stored.previous_tickets
        if previous is None:
            previous = repo.previous_ticket_count(session, ticket.customer_id, ticket.id)
        plan = plan_message(self.auto, parsed, mailbox=mailbox.address,
                            is_new=stored.new_ticket, arrived_at=stored.row.arrived_at,
                            previous_tickets=previous, now=self.clock.now(),
                            suggest=stored.new_ticket,  # apply_plan keeps them for new only
                            classification=stored.route.classification if stored.route
                            else None)  # the one decision ingest stored
        now = self.clock.now()
        apply_plan(session, self.auto, ticket, plan, stored.new_ticket, stored.row.arrived_at,
                   now, reopened=stored.reopened)
        reason = plan.skip_reason or rate_limit_reason(session, self.auto, plan.reply_to, now)
        if self.observe is not None:
            self.observe(plan, reason)
        if reason is not None:
            if stored.new_ticket or plan.verdict.automated or plan.decision.auto_reply:
                repo.add_event(session, ticket.id, now, "auto_reply_suppressed", reason=reason,
                               message_id=parsed.message_id)
                note(session, "auto_replies", "suppressed", reason_label(reason))
                log_after_commit(session, log, logging.INFO,
                                 "ticket #%d: auto-reply suppressed: %s", ticket.id, reason)
            return
        self._queue_eta(session, ticket, mailbox, plan, parsed, now)

    def _not_a_customer(self, session: Session, stored: StoredMessage,
                        parsed: ParsedMessage) -> None:
        row, now = stored.row, self.clock.now()
        if row.sender_class != "machine":
            return  # an agent's note or command: the command handler's business
        reason = f"loop-guard:{row.class_reason}"
        repo.add_event(session, stored.ticket.id, now, "auto_submitted",
                       reason=row.class_reason, mail_kind=row.machine_kind)
        repo.add_event(session, stored.ticket.id, now, "auto_reply_suppressed", reason=reason,
                       message_id=parsed.message_id)
        note(session, "auto_replies", "suppressed", reason_label(reason))
        log_after_commit(session, log, logging.INFO, "ticket #%d: %s mail (%s): no rules, "
                         "no reply", stored.ticket.id, row.machine_kind, row.class_reason)

    def _queue_eta(self, session: Session, ticket: Ticket, mailbox: Mailbox, plan: Plan,
                   parsed: ParsedMessage, now: datetime) -> None:
        settings = self.auto.settings
        template = self.auto.replies.get(plan.decision.auto_reply_template, plan.language,
                                         settings.default_language)
        rendered = render_macro(template, RenderContext(
            ticket_id=ticket.id, ticket_subject=ticket.subject, ticket_status=ticket.status,
            customer_name=parsed.from_name, customer_email=plan.reply_to,
            eta_text=plan.eta_text or "", company_name=settings.company,
            mailbox_address=mailbox.address, agent_name=settings.sender_name))
        out = compose(sender=mailbox.address, sender_name=settings.sender_name,
                      to=plan.reply_to, to_name=parsed.from_name, subject=rendered.subject,
                      body=rendered.body, date=now, ticket_id=ticket.id,
                      in_reply_to=parsed.message_id,
                      references=[*parsed.references, parsed.message_id],
                      language=template.language)
        enqueue(session, out, mailbox_id=mailbox.id, ticket_id=ticket.id, kind="auto_reply",
                now=now)
        note(session, "auto_replies", "queued", "")
        log_after_commit(session, log, logging.INFO, "ticket #%d: ETA auto-reply queued to %s "
                         "(%s, %s)", ticket.id, plan.reply_to, template.language, plan.eta_text)


class HistoryHandler:
    """Ingest handler for history mail (`maild.history`): the rules set priority, tags,
    SLA policy and language as for live mail; no auto-reply, no suggestions, no
    suppression events (history is never a candidate for a reply)."""

    name = "history"

    def __init__(self, automation: Automation, clock: Clock) -> None:
        self.auto = automation
        self.clock = clock

    def handle(self, session: Session, stored: StoredMessage, parsed: ParsedMessage) -> None:
        if stored.outbound or stored.row.auto:
            return
        ticket = stored.ticket
        previous = stored.previous_tickets
        if previous is None:
            previous = repo.previous_ticket_count(session, ticket.customer_id, ticket.id)
        mailbox = session.get_one(Mailbox, ticket.mailbox_id).address
        plan = plan_message(self.auto, parsed, mailbox=mailbox, is_new=stored.new_ticket,
                            arrived_at=stored.row.arrived_at, previous_tickets=previous,
                            now=self.clock.now(), suggest=False,
                            classification=stored.route.classification if stored.route
                            else None)
        apply_plan(session, self.auto, ticket, plan, stored.new_ticket, stored.row.arrived_at,
                   self.clock.now(), reopened=stored.reopened)
