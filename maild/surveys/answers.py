"""Record a survey answer: the ingest handler for mail routed as one (`Route.survey`).

The answer mail is already stored `auto` on its ticket (routing): it reopens
nothing and counts nowhere. Here its token is checked against the secret and the
survey maild sent: a good first answer becomes a `csat` (or `nps`) event with the
score and the comment (the text above the quote) and the survey row's score; the
opt-out link records `survey_opt_out_at` on the customer. Anything else (a bad
token, no survey sent for that ticket, a second answer, a ticket mismatch) is a
`survey_ignored` event and a log line with the reason. Nothing is ever sent back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from maild.clock import Clock
from maild.macros.text import strip_reply
from maild.parse import ParsedMessage
from maild.store import repo
from maild.store.models import Customer, Survey, Ticket
from maild.surveys.links import SurveyAnswer, token_ok
from maild.tickets import StoredMessage

MAX_COMMENT = 2000
log = logging.getLogger("maild.surveys")


class SurveyAnswerHandler:
    """Ingest handler; put it first (it only acts on survey answers)."""

    name = "surveys"

    def __init__(self, secret: Callable[[Session], str], clock: Clock) -> None:
        self.secret = secret
        self.clock = clock

    def handle(self, session: Session, stored: StoredMessage, parsed: ParsedMessage) -> None:
        answer = stored.route.survey if stored.route is not None else None
        if answer is None:
            return
        reason = self._problem(session, stored.ticket, answer)
        at = stored.row.arrived_at
        if reason is not None:
            repo.add_event(session, stored.ticket.id, self.clock.now(), "survey_ignored",
                           reason=reason, survey=answer.kind, message_id=parsed.message_id)
            log.info("ticket #%d: survey answer %s ignored: %s", stored.ticket.id,
                     parsed.message_id, reason)
            return
        if answer.opt_out:
            customer = session.get_one(Customer, stored.ticket.customer_id)
            customer.survey_opt_out_at = customer.survey_opt_out_at or at
            repo.add_event(session, stored.ticket.id, at, "survey_opt_out")
            log.info("ticket #%d: the customer opted out of surveys", stored.ticket.id)
            return
        self._record(session, stored.ticket, answer, parsed, at)

    def _problem(self, session: Session, ticket: Ticket, answer: SurveyAnswer) -> str | None:
        if answer.ticket_id != ticket.id:
            return f"ticket-mismatch (the link is for #{answer.ticket_id})"
        if answer.score == -1:
            return "bad-score"
        if not token_ok(self.secret(session), answer):
            return "bad-token"
        if answer.opt_out:
            return None
        survey = _survey(session, ticket.id, answer.kind)
        if survey is None or survey.status == "skipped":
            return f"no-survey (no {answer.kind} survey was sent for this ticket)"
        if survey.status == "answered":
            return f"reused (already answered {survey.score} at " \
                   f"{survey.answered_at.isoformat() if survey.answered_at else '?'})"
        return None

    def _record(self, session: Session, ticket: Ticket, answer: SurveyAnswer,
                parsed: ParsedMessage, at: datetime) -> None:
        survey = _survey(session, ticket.id, answer.kind)
        assert survey is not None and answer.score is not None
        survey.status, survey.score, survey.answered_at = "answered", answer.score, at
        comment = strip_reply(parsed.text, ticket.language)[:MAX_COMMENT].strip()
        repo.add_event(session, ticket.id, at, answer.kind, score=answer.score,
                       comment=comment, agent=survey.agent, message_id=parsed.message_id)
        log.info("ticket #%d: %s answer %d recorded", ticket.id, answer.kind, answer.score)


def _survey(session: Session, ticket_id: int, kind: str) -> Survey | None:
    return session.scalar(select(Survey).where(Survey.ticket_id == ticket_id,
                                               Survey.kind == kind))
