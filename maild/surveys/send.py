"""Queue the survey mail for tickets just solved (a scheduler job, every minute).

A ticket solved within `[csat] within_hours` with no survey decision yet gets one:
either a survey mail in the ticket's language (`templates/survey/csat.LANG.j2`,
the language handling of the ETA reply) with five `mailto:` links (and eleven NPS
links when `[csat] nps` is on and the customer had no NPS question within
`nps_per_customer_days`), or a `skipped` survey row with the reason: the ticket was
filtered, never answered by an agent, the customer opted out, was forgotten, or got
a survey within `per_customer_days`. Each ticket is decided once, after the
replies queued for it have gone out (the survey never overtakes the answer). The mail goes
through the outbox like every automatic mail (RFC 3834 headers); nothing is sent here.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from maild.compose import Outgoing, compose
from maild.config import Config
from maild.macros import MacroLibrary
from maild.macros.render import RenderContext, render_macro
from maild.outbox import enqueue
from maild.store.models import Customer, Mailbox, MessageRow, OutboxRow, Survey, Ticket
from maild.surveys.links import CSAT_SCORES, NPS_SCORES, OPT_OUT, answer_subject, mailto

BATCH = 100
log = logging.getLogger("maild.surveys")

CSAT_LABELS = {
    "en": ("very dissatisfied", "dissatisfied", "neither", "satisfied", "very satisfied"),
    "tr": ("hiç memnun değilim", "memnun değilim", "kararsızım", "memnunum", "çok memnunum"),
}
NPS_QUESTION = {
    "en": "How likely are you to recommend us to a friend or colleague? "
          "(0 = not at all, 10 = extremely likely)",
    "tr": "Bizi bir arkadaşınıza ya da iş arkadaşınıza tavsiye etme olasılığınız nedir? "
          "(0 = hiç, 10 = kesinlikle)",
}
OPT_OUT_LABEL = {"en": "No more surveys, please", "tr": "Artık anket göndermeyin"}


@dataclass(frozen=True)
class SurveySettings:
    per_customer: timedelta
    within: timedelta
    nps: bool
    nps_per_customer: timedelta
    sender_name: str
    company: str
    default_language: str


def survey_settings(config: Config) -> SurveySettings:
    c = config.csat
    return SurveySettings(timedelta(days=c.per_customer_days), timedelta(hours=c.within_hours),
                          c.nps, timedelta(days=c.nps_per_customer_days),
                          config.autoreply.sender_name, config.autoreply.company,
                          config.autoreply.default_language)


def _due(session: Session, since: datetime, limit: int) -> list[Ticket]:
    decided = exists().where(Survey.ticket_id == Ticket.id, Survey.kind == "csat")
    return list(session.scalars(select(Ticket).where(
        Ticket.status == "solved", Ticket.solved_at >= since, ~decided)
        .order_by(Ticket.solved_at, Ticket.id).limit(limit)))


def _recent(session: Session, customer_id: int, kind: str, since: datetime) -> bool:
    return session.scalar(select(Survey.id).where(
        Survey.customer_id == customer_id, Survey.kind == kind,
        Survey.status.in_(("sent", "answered")), Survey.created_at >= since).limit(1)) is not None


def _human_replies_queued(session: Session, ticket_id: int) -> tuple[int, int]:
    """(still queued, sent) human replies of the ticket in the outbox (`maild reply`,
    command mail): they count as agent replies only once their Sent copy is read."""
    rows = session.execute(select(OutboxRow.status).where(
        OutboxRow.ticket_id == ticket_id, OutboxRow.auto.is_(False))).scalars().all()
    return (sum(1 for r in rows if r in ("queued", "sending")),
            sum(1 for r in rows if r == "sent"))


def _last_agent(session: Session, ticket_id: int) -> tuple[str, str] | None:
    """(address, name) of the ticket's last agent reply (a sent `maild reply` whose Sent
    copy is not read yet: the mailbox's address, as `per_agent` will count it)."""
    row = session.execute(select(MessageRow.from_addr, MessageRow.from_name).where(
        MessageRow.ticket_id == ticket_id, MessageRow.direction == "out",
        MessageRow.auto.is_(False)).order_by(MessageRow.arrived_at.desc(),
                                             MessageRow.id.desc()).limit(1)).first()
    if row is not None:
        return row[0], row[1]
    sent = session.scalar(select(OutboxRow.sender).where(
        OutboxRow.ticket_id == ticket_id, OutboxRow.auto.is_(False),
        OutboxRow.status == "sent").order_by(OutboxRow.id.desc()).limit(1))
    return (sent, "") if sent else None


def skip_reason(session: Session, ticket: Ticket, customer: Customer,
                settings: SurveySettings, now: datetime) -> str | None:
    if ticket.filtered_kind is not None:
        return f"filtered ({ticket.filtered_kind})"
    if ticket.agent_replies < 1 and _human_replies_queued(session, ticket.id)[1] == 0:
        return "no agent reply to rate"
    if customer.erased_at is not None:
        return "customer forgotten"
    if customer.survey_opt_out_at is not None:
        return "customer opted out"
    if "@" not in customer.address:
        return "no address"
    if _recent(session, customer.id, "csat", now - settings.per_customer):
        return f"a survey within {settings.per_customer.days} days (csat.per_customer_days)"
    return None


def queue_surveys(session: Session, settings: SurveySettings, templates: MacroLibrary,
                  secret: str, now: datetime, limit: int = BATCH) -> dict[str, int]:
    """Decide the survey of every ticket solved lately; counts of sent and skipped."""
    sent = skipped = 0
    for ticket in _due(session, now - settings.within, limit):
        if _human_replies_queued(session, ticket.id)[0]:
            continue  # the solving reply goes out first; decided at a later run
        customer = session.get_one(Customer, ticket.customer_id)
        agent = _last_agent(session, ticket.id)
        reason = skip_reason(session, ticket, customer, settings, now)
        if reason is not None:
            session.add(Survey(ticket_id=ticket.id, customer_id=customer.id, kind="csat",
                               status="skipped", reason=reason[:255], created_at=now,
                               agent=agent[0] if agent else None))
            log.info("ticket #%d: no survey: %s", ticket.id, reason)
            skipped += 1
            continue
        nps = settings.nps and not _recent(session, customer.id, "nps",
                                           now - settings.nps_per_customer)
        mailbox = session.get_one(Mailbox, ticket.mailbox_id)
        out = compose_survey(ticket, customer, mailbox.address, settings, templates, secret,
                             now, nps=nps, agent_name=agent[1] if agent else "")
        enqueue(session, out, mailbox_id=mailbox.id, ticket_id=ticket.id, kind="survey",
                now=now)
        for kind in ("csat", "nps") if nps else ("csat",):
            session.add(Survey(ticket_id=ticket.id, customer_id=customer.id, kind=kind,
                               status="sent", created_at=now, agent=agent[0] if agent else None))
        log.info("ticket #%d: survey queued%s", ticket.id, " with NPS" if nps else "")
        sent += 1
    return {"surveys_sent": sent, "surveys_skipped": skipped}


def _links(address: str, secret: str, ticket_id: int, kind: str, scores: tuple[int, ...],
           labels: tuple[str, ...] | None) -> list[tuple[str, str]]:
    return [(f"{n} - {labels[i]}" if labels else str(n),
             mailto(address, answer_subject(secret, kind, ticket_id, n)))
            for i, n in enumerate(scores)]


def compose_survey(ticket: Ticket, customer: Customer, support: str, settings: SurveySettings,
                   templates: MacroLibrary, secret: str, now: datetime, *, nps: bool,
                   agent_name: str = "") -> Outgoing:
    template = templates.get("csat", ticket.language, settings.default_language)
    lang = template.language if template.language in CSAT_LABELS else "en"
    rendered = render_macro(template, RenderContext(
        ticket_id=ticket.id, ticket_subject=ticket.subject, ticket_status=ticket.status,
        customer_name=customer.name, customer_email=customer.address,
        company_name=settings.company, mailbox_address=support, agent_name=agent_name))
    blocks: dict[str, list[tuple[str, str]]] = {
        "@@CSAT_LINKS@@": _links(support, secret, ticket.id, "csat", CSAT_SCORES,
                                 CSAT_LABELS[lang]),
        "@@NPS_LINKS@@": _links(support, secret, ticket.id, "nps", NPS_SCORES, None)
        if nps else [],
        "@@OPT_OUT@@": [(OPT_OUT_LABEL[lang],
                         mailto(support, answer_subject(secret, "csat", ticket.id, OPT_OUT)))],
    }
    text, markup = _fill(rendered.body, blocks, NPS_QUESTION[lang] if nps else "")
    return compose(sender=support, sender_name=settings.sender_name, to=customer.address,
                   to_name=customer.name, subject=rendered.subject, body=text, date=now,
                   ticket_id=ticket.id, language=template.language, html=markup)


def _fill(body: str, blocks: dict[str, list[tuple[str, str]]],
          nps_question: str) -> tuple[str, str]:
    """The body with each marker line replaced by its links: as text and as HTML."""
    text: list[str] = []
    markup: list[str] = []
    for line in body.split("\n"):
        marker = line.strip()
        if marker not in blocks:
            text.append(line)
            markup.append(f"{html.escape(line)}<br>")
            continue
        links = blocks[marker]
        if marker == "@@NPS_LINKS@@" and links:
            text += ["", nps_question]
            markup.append(f"<p>{html.escape(nps_question)}</p>")
        text += [f"  {label}: {url}" for label, url in links]
        markup += [f'<p><a href="{html.escape(url)}">{html.escape(label)}</a></p>'
                   for label, url in links]
    return "\n".join(text), "<html><body>" + "\n".join(markup) + "</body></html>"
