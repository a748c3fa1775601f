"""Retention: `[privacy] keep_message_text_days` purges the text, HTML and raw copies
(stored sources, sent mail in the outbox) of tickets solved longer ago than that.

What stays is the metadata the KPIs read: times, directions, classes, statuses,
counts, scores, subjects. A purged ticket gets `text_purged_at` and a
`text_purged` event and is not looked at again (a reopened one keeps its new mail
until it is solved and old again). Runs from the scheduler (`maild.schedule`);
sends nothing.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from maild.store import repo
from maild.store.models import MessageRow, MessageSource, OutboxRow, Quarantine, Ticket

BATCH = 200  # tickets per run: a first run over years of history is spread out
log = logging.getLogger("maild.privacy")


def purge_old_text(session: Session, now: datetime, days: int,
                   limit: int = BATCH) -> list[int]:
    """Purge the bodies of up to `limit` tickets solved more than `days` ago; their ids."""
    if days <= 0:
        return []
    cutoff = now - timedelta(days=days)
    ids = list(session.scalars(select(Ticket.id).where(
        Ticket.status == "solved", Ticket.solved_at < cutoff,
        Ticket.text_purged_at.is_(None)).order_by(Ticket.id).limit(limit)))
    if not ids:
        return []
    message_ids = select(MessageRow.id).where(MessageRow.ticket_id.in_(ids)).scalar_subquery()
    session.execute(delete(MessageSource).where(MessageSource.message_pk.in_(message_ids)))
    session.execute(update(MessageRow).where(MessageRow.ticket_id.in_(ids))
                    .values(text="", html="").execution_options(synchronize_session=False))
    session.execute(update(OutboxRow).where(
        OutboxRow.ticket_id.in_(ids), OutboxRow.status.in_(("sent", "failed", "cancelled")))
        .values(raw=b"").execution_options(synchronize_session=False))
    session.execute(update(Ticket).where(Ticket.id.in_(ids)).values(text_purged_at=now)
                    .execution_options(synchronize_session=False))
    for tid in ids:
        repo.add_event(session, tid, now, "text_purged", days=days)
    log.info("retention: purged message text of %d ticket(s) solved before %s", len(ids),
             cutoff.date().isoformat())
    return ids


def purge_old_quarantine(session: Session, now: datetime, days: int) -> int:
    """Blank the raw copies of quarantined mail resolved (retried or dropped) longer
    ago than `days`; unresolved mail is kept until someone deals with it."""
    if days <= 0:
        return 0
    result = session.execute(update(Quarantine).where(
        Quarantine.resolved.is_(True), Quarantine.at < now - timedelta(days=days),
        Quarantine.raw != b"").values(raw=b"").execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)
