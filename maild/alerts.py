"""SLA alert mail: tell people (`[sla] alert_to`) when a ticket's first-response
SLA is at risk (the warning) or breached, so they hear of it before the digest.

One mail per ticket and kind, queued in the outbox in the same transaction that
records the `sla_warning`/`sla_breach` event, so an alert goes out exactly when
its event exists: never twice, never without the event. When many tickets turn
at once (maild was down for a day), one summary mail per kind lists the first
`MAX_SINGLE` tickets instead of flooding the inbox.

It must not decide who is at risk (`sla.check_sla` does), send anything (the
outbox does) or commit. The subject carries no `[#ID]` tag, so an agent who
answers an alert by mistake does not touch the ticket.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from maild.compose import compose, one_line
from maild.outbox import enqueue
from maild.store.models import Customer, Mailbox, Ticket

log = logging.getLogger("maild.alerts")
MAX_SINGLE = 20
# RFC 3834: a notification, not a reply; and no out-of-office answers to it, please.
NOTIFICATION_HEADERS = {"Auto-Submitted": "auto-generated", "X-Auto-Response-Suppress": "All"}
WORDING = {"warning": ("SLA at risk", "is at risk of missing its first-response SLA",
                       "are at risk of missing their first-response SLA"),
           "breach": ("SLA breached", "missed its first-response SLA: no agent reply by the "
                      "due time", "missed their first-response SLA")}


@dataclass(frozen=True)
class AlertSettings:
    to: tuple[str, ...]
    sender: str  # alerts come from the ticket's mailbox; this one if it has none
    sender_name: str
    zone: ZoneInfo


def queue_alerts(session: Session, settings: AlertSettings, kind: str,
                 ticket_ids: Sequence[int], now: datetime) -> int:
    """Queue the alert mail for tickets that just got a `kind` event; mails queued."""
    if not settings.to or not ticket_ids:
        return 0
    rows = _tickets(session, ticket_ids[:MAX_SINGLE])
    if len(ticket_ids) <= MAX_SINGLE:
        mails = [(t.mailbox_id, _single_subject(kind, t, settings.zone),
                  _single_body(kind, t, c, settings.zone)) for t, c in rows]
    else:
        mails = [(rows[0][0].mailbox_id, *_summary(kind, len(ticket_ids), rows, settings.zone))]
    for mailbox_id, subject, body in mails:
        # from the ticket's own mailbox: its SMTP sends it, its Sent keeps the copy
        sender = session.scalar(select(Mailbox.address).where(Mailbox.id == mailbox_id))
        for to in settings.to:
            out = compose(sender=sender or settings.sender, sender_name=settings.sender_name, to=to,
                          to_name="", subject=subject, body=body, date=now, ticket_id=None,
                          automatic=False, extra_headers=NOTIFICATION_HEADERS)
            enqueue(session, out, mailbox_id=mailbox_id, ticket_id=None,
                    kind=f"sla_{kind}_alert", now=now)
    log.info("SLA %s alert for %d ticket(s) queued to %s", kind, len(ticket_ids),
             ", ".join(settings.to))
    return len(mails) * len(settings.to)


def _tickets(session: Session, ids: Sequence[int]) -> list[tuple[Ticket, Customer]]:
    rows = session.execute(select(Ticket, Customer).join(
        Customer, Customer.id == Ticket.customer_id).where(Ticket.id.in_(ids)).order_by(
        Ticket.sla_due_at, Ticket.id)).all()
    return [(t, c) for t, c in rows]


def _local(at: datetime | None, zone: ZoneInfo) -> str:
    return "-" if at is None else at.astimezone(zone).strftime("%a %d %b %H:%M")


def _single_subject(kind: str, ticket: Ticket, zone: ZoneInfo) -> str:
    title = WORDING[kind][0]
    return one_line(f"{title}: ticket {ticket.id}, {ticket.subject[:80]} "
                    f"(due {_local(ticket.sla_due_at, zone)})")


def _single_body(kind: str, ticket: Ticket, customer: Customer, zone: ZoneInfo) -> str:
    who = f"{customer.name} <{customer.address}>" if customer.name else customer.address
    return "\n".join([
        f"Ticket {ticket.id} {WORDING[kind][1]}.", "",
        f"Subject:   {one_line(ticket.subject)}",
        f"Customer:  {one_line(who)}",
        f"Opened:    {_local(ticket.created_at, zone)} ({zone.key})",
        f"Due:       {_local(ticket.sla_due_at, zone)}",
        f"Priority:  {ticket.priority}", "",
        f"Details: maild tickets show {ticket.id}", ""])


def _summary(kind: str, count: int, rows: list[tuple[Ticket, Customer]],
             zone: ZoneInfo) -> tuple[str, str]:
    title, _, verb = WORDING[kind]
    lines = [f"{count} tickets {verb} at once (was maild stopped for a while?).",
             f"The first {len(rows)} by due time ({zone.key}):", ""]
    for t, c in rows:
        lines.append(f"  {t.id:>7}  due {_local(t.sla_due_at, zone)}  {one_line(c.address)}  "
                     f"{one_line(t.subject)[:60]}")
    lines += ["", "All of them: maild tickets list", ""]
    return f"{title}: {count} tickets", "\n".join(lines)
