"""The scheduled jobs and the APScheduler 3.x scheduler that runs them.

Jobs (each a plain function of the App, usable from `run --once`):
- `job_sla`: SLA warnings and breaches (with the alert mail to `sla.alert_to`, queued
  in the same transaction as the events), and the pending auto-solve (every minute);
- `job_outbox`: send or retry the outbox (every minute);
- `job_surveys`: the satisfaction survey for tickets just solved (`[csat]`, every minute);
- `job_escalation`: the time-based automations over the backlog (every
  `escalation.every_minutes`);
- `job_retention`: `[privacy] keep_message_text_days` purges old tickets' text (hourly);
- `job_digest`: the managers' daily digest for yesterday, once per local day at
  `digest.at` in the SLA time zone, on the configured weekdays; never for a day
  before maild's first run (the first mailbox row): a new install does not mail
  a digest of the day before it existed.
The scheduled digest's Message-ID is derived from the day and the mailbox, and
the outbox's unique Message-ID makes "sent once" a database fact: a daemon
started after `digest.at` catches that day up exactly once, and several
instances (or a cron job and a daemon) can never send it twice. A manual
`digest --send` gets a Message-ID of its own, so it never stands in for (or
blocks) the scheduled one. `maild run` hosts a
BackgroundScheduler (imapclient is blocking, so pollers and jobs run in
threads); `run_due` runs what is due right now, for `run --once`.
"""

from __future__ import annotations

import logging
import time as time_module
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobEvent
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from maild.alerts import AlertSettings, queue_alerts
from maild.app import App
from maild.compose import Outgoing, make_message_id
from maild.delivery import deliver_outbox
from maild.outbox import enqueue
from maild.report.digest import build_digest, render_digest_email
from maild.sla import auto_solve_pending, check_sla
from maild.store import repo
from maild.store.models import Mailbox, OutboxRow

log = logging.getLogger("maild.schedule")


def job_sla(app: App) -> dict[str, Any]:
    now = app.clock.now()
    with app.sessions.begin() as session:
        report = check_sla(session, now)
        alerts = alert_settings(app)
        queue_alerts(session, alerts, "breach", report.breached, now)
        queue_alerts(session, alerts, "warning", report.warned, now)
        solved = auto_solve_pending(session, now, app.config.sla.auto_solve_pending_days)
    return {"warned": report.warned, "breached": report.breached, "auto_solved": solved}


def alert_settings(app: App) -> AlertSettings:
    cfg = app.config
    return AlertSettings(to=cfg.sla.alert_to, sender=cfg.mailboxes[0].address,
                         sender_name=cfg.autoreply.sender_name, zone=ZoneInfo(cfg.sla.timezone))


def job_outbox(app: App) -> dict[str, Any]:
    report = deliver_outbox(app)
    return {} if report is None else {"sent": len(report.sent), "retry": len(report.retry),
                                      "failed": len(report.failed)}


def digest_message_id(day: date, mailbox: str) -> str:
    return f"<maild.digest.{day.isoformat()}.{mailbox.replace('@', '.')}@maild.invalid>"


@dataclass(frozen=True)
class DigestSlot:
    day: date  # the local day the digest reports on (yesterday)
    due_at: datetime  # when it is due (UTC)


def digest_slot(app: App, now: datetime) -> DigestSlot | None:
    """The digest due at `now` (yesterday's, once today's `at` has passed), or None."""
    cfg = app.config
    zone = ZoneInfo(cfg.sla.timezone)
    local = now.astimezone(zone)
    hh, mm = (int(x) for x in cfg.digest.at.split(":"))
    due = datetime.combine(local.date(), time(hh, mm), zone)
    if local < due or not cfg.digest.to:
        return None
    if ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[local.weekday()] not in cfg.digest.days:
        return None
    return DigestSlot(local.date() - timedelta(days=1), due.astimezone(now.tzinfo))


def first_run_day(session: Session, zone: ZoneInfo) -> date | None:
    """The local day maild first ran (stored its first mailbox), or None if never."""
    first = session.scalar(select(func.min(Mailbox.created_at)))
    if first is None:
        return None
    return (first if first.tzinfo else first.replace(tzinfo=UTC)).astimezone(zone).date()


def job_digest(app: App, day: date | None = None, force: bool = False) -> dict[str, Any]:
    """Queue the digest for `day` (default: the due one) unless already queued.

    `force` (a manual `digest --send`): send it even if the scheduled one went out, under
    a Message-ID of its own, for any day. Without it, no digest for a day before maild's
    first run."""
    now = app.clock.now()
    slot = DigestSlot(day, now) if day else digest_slot(app, now)
    if slot is None:
        return {"digest": "not due"}
    mb = app.config.mailboxes[0]
    message_id = digest_message_id(slot.day, mb.address)
    with app.sessions.begin() as session:
        if not force:
            exists = session.scalar(select(OutboxRow.id).where(
                OutboxRow.message_id == message_id))
            if exists:
                log.info("digest for %s already sent, not sent again", slot.day)
                return {"digest": f"{slot.day} already sent"}
            first = first_run_day(session, ZoneInfo(app.config.sla.timezone))
            if first is None or slot.day < first:
                since = f"maild first ran on {first}" if first else "maild has not run yet"
                log.info("no digest for %s: %s (no digest for days before the first run)",
                         slot.day, since)
                return {"digest": f"{slot.day} skipped: {since}"}
        mailbox = repo.get_or_create_mailbox(session, mb.address, now)
        digest = build_digest(session, app.automation().calendar, slot.day,
                              app.config.sla.timezone, now, company=app.config.autoreply.company,
                              agents=app.config.agents,
                              templates=app.config.templates_dir() / "digest")
        # A manual send (digest --send) has a Message-ID of its own: the scheduled digest
        # still goes out (and is still sent once).
        mid = make_message_id(mb.address.rpartition("@")[2], None) if force else message_id
        raw = render_digest_email(digest, mb.address, list(app.config.digest.to), now, mid)
        out = Outgoing(mid, mb.address, tuple(app.config.digest.to), digest.subject, raw)
        enqueue(session, out, mailbox_id=mailbox.id, ticket_id=None, kind="digest", now=now)
    log.info("digest for %s queued to %s", slot.day, ", ".join(app.config.digest.to))
    return {"digest": f"{slot.day} queued"}


def job_digest_and_send(app: App) -> dict[str, Any]:
    """The daemon's digest job: queue the digest if due, then send it at once (the
    outbox job may have run a moment earlier and would otherwise wait a minute)."""
    result = job_digest(app)
    if str(result.get("digest", "")).endswith("queued"):
        result.update(job_outbox(app))
    return result


def job_surveys(app: App) -> dict[str, Any]:
    """Queue the survey mail for tickets solved since the last run (`[csat]`)."""
    from maild.macros import load_macros
    from maild.surveys.send import queue_surveys, survey_settings

    if not app.config.csat.enabled:
        return {}
    templates = load_macros(app.config.templates_dir() / "survey")
    now = app.clock.now()
    with app.sessions.begin() as session:
        return queue_surveys(session, survey_settings(app.config), templates,
                             app.survey_secret(session), now)


def job_escalation(app: App) -> dict[str, Any]:
    """Fire the `[[automation]]`s that hold on open tickets (once per episode); not on
    history (mail older than `autoreply.max_age_hours` when maild first ran)."""
    from maild.escalation.runner import NoticeSettings, run_automations

    timed = app.automation().timed
    if not timed or app.config.escalation.every_minutes <= 0:
        return {}
    settings = NoticeSettings(app.config.mailboxes[0].address, app.config.autoreply.sender_name)
    history_age = timedelta(hours=app.config.autoreply.max_age_hours)
    with app.sessions.begin() as session:
        return run_automations(session, timed, settings, app.clock.now(),
                               history_age=history_age)


def job_retention(app: App) -> dict[str, Any]:
    """Purge the text of tickets solved longer ago than `keep_message_text_days`."""
    from maild.privacy import purge_old_text
    from maild.privacy.retention import purge_old_quarantine

    days = app.config.privacy.keep_message_text_days
    if days <= 0:
        return {}
    now = app.clock.now()
    with app.sessions.begin() as session:
        purged = purge_old_text(session, now, days)
        quarantine = purge_old_quarantine(session, now, days)
    return {"text_purged": len(purged), "quarantine_purged": quarantine}


def run_due(app: App) -> dict[str, Any]:
    """Everything due now: SLA checks, escalations, surveys, retention, the digest if
    due (then the outbox sends it)."""
    return {**_logged(job_sla, app), **_logged(job_escalation, app),
            **_logged(job_surveys, app), **_logged(job_retention, app),
            **_logged(job_digest, app)}


SKIPPED_WORDS = ("not due", "already sent", "skipped")


def _logged(job: Any, app: App) -> dict[str, Any]:
    """Run `job` and log, at DEBUG, that it ran or was skipped (and why), and how long."""
    started = time_module.monotonic()
    result: dict[str, Any] = job(app)
    skipped = any(isinstance(v, str) and any(w in v for w in SKIPPED_WORDS)
                  for v in result.values())
    log.debug("scheduled job %s %s in %.2f s: %s", job.__name__.removeprefix("job_"),
              "skipped" if skipped else "ran", time_module.monotonic() - started, result)
    return result


def build_scheduler(app: App) -> BackgroundScheduler:
    """The daemon's scheduler; digest at `digest.at` local time, caught up at start."""
    cfg = app.config
    zone = ZoneInfo(cfg.sla.timezone)
    scheduler = BackgroundScheduler(timezone=zone, job_defaults={
        "coalesce": True, "max_instances": 1, "misfire_grace_time": 3600})
    # First runs at start: mail queued before a crash goes out now, not a minute later.
    start = datetime.now(zone)
    scheduler.add_job(_safe(job_sla, app), "interval", minutes=1, id="sla",
                      next_run_time=start)
    scheduler.add_job(_safe(job_outbox, app), "interval", minutes=1, id="outbox",
                      next_run_time=start)
    if cfg.escalation.every_minutes > 0:
        scheduler.add_job(_safe(job_escalation, app), "interval",
                          minutes=cfg.escalation.every_minutes, id="escalation",
                          next_run_time=start)
    scheduler.add_job(_safe(job_surveys, app), "interval", minutes=1, id="surveys",
                      next_run_time=start)
    scheduler.add_job(_safe(job_retention, app), "interval", hours=1, id="retention",
                      next_run_time=start)
    hh, mm = cfg.digest.at.split(":")
    scheduler.add_job(_safe(job_digest_and_send, app), CronTrigger(
        day_of_week=",".join(cfg.digest.days), hour=int(hh), minute=int(mm), timezone=zone),
        id="digest")
    scheduler.add_job(_safe(job_digest_and_send, app), id="digest-catch-up")  # once, now
    scheduler.add_listener(_log_missed, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
    return scheduler


def _log_missed(event: JobEvent) -> None:
    why = "its run time was missed" if event.code == EVENT_JOB_MISSED else \
        "the previous run is still going"
    log.debug("scheduled job %s skipped: %s", event.job_id, why)


def _safe(job: Any, app: App) -> Any:
    def run() -> None:
        try:
            _logged(job, app)
        except Exception:  # a failing job must not stop the scheduler
            log.exception("scheduled job %s failed", job.__name__)
    run.__name__ = job.__name__
    return run
