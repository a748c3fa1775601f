"""Prometheus metrics of one maild process (prometheus-client), for `/metrics`.

Two kinds, kept apart:
- counters and a histogram of what this process did (messages ingested, ETA
  auto-replies queued or suppressed by reason, outbox sends by kind, ingest
  batch durations); they start at zero with the process, as Prometheus expects;
- gauges of the shared state, read from the database at scrape time with a few
  cheap indexed queries (tickets by status, SLA at risk and breached, outbox
  queued/failed and its oldest row's age, quarantine size), plus each mailbox's
  last successful poll from the pollers' in-memory state.

Counters that describe database work are counted only when that work commits:
code in a transaction calls `note(session, ...)`, and the session's commit
hook adds it (a rolled-back batch that is fetched again is not counted twice).
This module reads the database and never writes it.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, event, func, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from maild.clock import Clock
from maild.pollstate import PollStates
from maild.sla import OPEN_STATUSES
from maild.store.models import OutboxRow, Quarantine, Ticket

if TYPE_CHECKING:
    from maild.ingest import BatchResult

log = logging.getLogger("maild.metrics")

PENDING_KEY = "maild.metrics"  # session.info key for counts waiting for the commit
TICKET_STATUSES = ("new", "open", "pending", "solved", "filtered")
BATCH_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_REASON_RE = re.compile(r"[a-z][a-z0-9_-]*(:[a-z0-9_.-]+)?")
_REASON_WORDS = {"too old": "too-old", "disabled in config": "disabled",
                 "reply to an existing ticket": "existing-ticket",
                 "no address to reply to": "no-address"}


def reason_label(reason: str) -> str:
    """A short, bounded label for a suppression reason (the full text is in the event):
    `loop-guard:bounce` stays, `rule:spam-subjects (spam)` becomes `rule`,
    `rate-limit-sender (one per 24 h)` becomes `rate-limit-sender`."""
    text = reason.strip().lower()
    for words, label in _REASON_WORDS.items():
        if text.startswith(words):
            return label
    if text.startswith("rule:"):
        return "rule"
    m = _REASON_RE.match(text)
    return m.group(0) if m else "other"


def note(session: Session, counter: str, *labels: str) -> None:
    """Count `counter` (with `labels`) once `session`'s transaction commits."""
    session.info.setdefault(PENDING_KEY, []).append((counter, labels))


class Metrics:
    """The process's registry: counters, the batch histogram, the scrape-time gauges."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.ingested = Counter("maild_messages_ingested", "Messages stored (new to maild)",
                                ["mailbox", "folder"], registry=self.registry)
        self.auto_replies = Counter("maild_auto_replies",
                                    "ETA auto-replies: queued, or suppressed with the reason",
                                    ["outcome", "reason"], registry=self.registry)
        self.outbox_sent = Counter("maild_outbox_sent", "Messages the SMTP server accepted",
                                   ["kind"], registry=self.registry)
        self.batch_seconds = Histogram("maild_ingest_batch_duration_seconds",
                                       "Time to parse and store one fetched batch",
                                       ["mailbox"], buckets=BATCH_BUCKETS,
                                       registry=self.registry)
        self._counters: dict[str, Counter] = {"auto_replies": self.auto_replies,
                                              "outbox_sent": self.outbox_sent}

    def attach(self, sessions: sessionmaker[Session], engine: Engine, clock: Clock,
               polls: PollStates) -> None:
        """Count noted work when it commits; read the gauges from `engine` at scrape."""
        event.listen(sessions, "after_commit", self._committed)
        event.listen(sessions, "after_rollback", self._rolled_back)
        self.registry.register(StateCollector(engine, clock, polls))

    def observe_batch(self, mailbox: str, role: str, seconds: float,
                      result: BatchResult) -> None:
        self.batch_seconds.labels(mailbox).observe(seconds)
        if result.stored:
            self.ingested.labels(mailbox, role).inc(result.stored)

    def _committed(self, session: Session) -> None:
        for name, labels in session.info.pop(PENDING_KEY, []):
            counter = self._counters.get(name)
            if counter is not None:
                counter.labels(*labels).inc()

    def _rolled_back(self, session: Session) -> None:
        session.info.pop(PENDING_KEY, None)


class StateCollector(Collector):
    """Gauges computed at scrape time; a database that does not answer gives
    `maild_database_up 0` and leaves the database gauges out, never a failed scrape."""

    def __init__(self, engine: Engine, clock: Clock, polls: PollStates) -> None:
        self.engine = engine
        self.clock = clock
        self.polls = polls

    def collect(self) -> Iterator[Metric]:
        yield from self._mailboxes()
        up = GaugeMetricFamily("maild_database_up", "1 if the database answered this scrape")
        try:
            families = list(self._database(self.clock.now()))
        except SQLAlchemyError as exc:
            log.warning("metrics: database did not answer: %s", str(exc).splitlines()[0])
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _mailboxes(self) -> Iterator[Metric]:
        age = GaugeMetricFamily("maild_mailbox_last_poll_age_seconds",
                                "Seconds since the mailbox's last successful poll (since "
                                "start if none yet)", labels=["mailbox"])
        failures = GaugeMetricFamily("maild_mailbox_failures",
                                     "Failed attempts in a row (connect, login, database)",
                                     labels=["mailbox"])
        standby = GaugeMetricFamily("maild_mailbox_standby", "1 while another instance "
                                    "holds the mailbox", labels=["mailbox"])
        now = time.time()
        for snap in self.polls.all():
            age.add_metric([snap.address], now - (snap.last_ok or snap.started))
            failures.add_metric([snap.address], snap.failures)
            standby.add_metric([snap.address], 1 if snap.standby else 0)
        yield from (age, failures, standby)

    def _database(self, now: datetime) -> Iterator[Metric]:
        with Session(self.engine) as session:
            yield _tickets(session)
            yield from _sla(session, now)
            yield from _outbox(session, now)
            quarantined = session.scalar(select(func.count(Quarantine.id)).where(
                Quarantine.resolved.is_(False))) or 0
            yield _gauge("maild_quarantine_messages", "Messages that failed to store, "
                         "kept raw for a retry", quarantined)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    g = GaugeMetricFamily(name, doc)
    g.add_metric([], value)
    return g


def _tickets(session: Session) -> GaugeMetricFamily:
    counts = {status: n for status, n in session.execute(
        select(Ticket.status, func.count(Ticket.id)).group_by(Ticket.status))}
    g = GaugeMetricFamily("maild_tickets", "Tickets by status", labels=["status"])
    for status in sorted({*TICKET_STATUSES, *counts}):
        g.add_metric([status], counts.get(status, 0))
    return g


def _sla(session: Session, now: datetime) -> Iterator[GaugeMetricFamily]:
    unanswered = (Ticket.status.in_(OPEN_STATUSES), Ticket.first_response_at.is_(None))
    at_risk = session.scalar(select(func.count(Ticket.id)).where(
        *unanswered, Ticket.sla_breached.is_(False), Ticket.sla_warn_at <= now)) or 0
    breached = session.scalar(select(func.count(Ticket.id)).where(
        Ticket.status.in_(OPEN_STATUSES), or_(
            Ticket.sla_breached.is_(True) & Ticket.first_response_at.is_(None),
            Ticket.next_breached.is_(True)))) or 0
    yield _gauge("maild_sla_at_risk_tickets", "Unanswered open tickets past their SLA "
                 "warning time, not yet breached", at_risk)
    yield _gauge("maild_sla_breached_tickets", "Open tickets whose first- or next-response "
                 "SLA is breached", breached)


def _outbox(session: Session, now: datetime) -> Iterator[GaugeMetricFamily]:
    counts: dict[str, Any] = {status: n for status, n in session.execute(
        select(OutboxRow.status, func.count(OutboxRow.id)).where(
            OutboxRow.status.in_(("queued", "sending", "failed"))).group_by(
            OutboxRow.status))}
    g = GaugeMetricFamily("maild_outbox_messages", "Outbox rows not sent (queued, sending, "
                          "failed for good)", labels=["status"])
    for status in ("queued", "sending", "failed"):
        g.add_metric([status], counts.get(status, 0))
    yield g
    oldest = oldest_queued(session)
    yield _gauge("maild_outbox_oldest_queued_age_seconds", "Age of the oldest queued or "
                 "sending outbox row (0 when empty)",
                 max(0.0, (now - oldest).total_seconds()) if oldest else 0.0)


def oldest_queued(session: Session) -> datetime | None:
    """When the oldest message still waiting in the outbox was queued (UTC), or None."""
    value = session.scalar(select(func.min(OutboxRow.created_at)).where(
        OutboxRow.status.in_(("queued", "sending"))))
    if value is not None and value.tzinfo is None:  # SQLite's MIN() may lose the type
        value = value.replace(tzinfo=UTC)
    return value
