"""The durable outbox: queue in the deciding transaction, send, mark sent.

`enqueue` only inserts a row (the caller's transaction commits it together
with the decision). `OutboxSender.deliver_due` claims due rows one at a time
(`FOR UPDATE SKIP LOCKED` where the database has it, so several maild
processes never send the same row), sends outside any transaction, then marks
the row sent and records the message on its ticket. A crash between the SMTP
server's acceptance and the mark leaves the row claimed; after `stale_after`
it is sent again with the SAME Message-ID (at-least-once, recognisable as a
duplicate downstream). Temporary failures back off exponentially up to a cap;
after `max_attempts`, or on a permanent 5xx, the row is marked failed with an
event and a log line — never dropped. A permanent failure with a reason
(`SendError.reason`, e.g. `smtputf8-unsupported`) also records a `delivery_failed`
event per recipient, shaped like a bounce's. No SMTP or IMAP code here: both are
injected callables.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from maild.calendar import BusinessCalendar
from maild.clock import Clock
from maild.compose import Outgoing
from maild.errors import MaildError, SendError
from maild.parse import parse_message
from maild.store import repo
from maild.store.models import OutboxRow
from maild.tickets import TicketWriter
from maild.undeliverable import delivery_failed

log = logging.getLogger("maild.outbox")

SendFn = Callable[[bytes, str, Sequence[str]], str]
AppendFn = Callable[[Sequence[bytes]], None]


def enqueue(session: Session, out: Outgoing, *, mailbox_id: int, ticket_id: int | None,
            kind: str, now: datetime, auto: bool = True) -> OutboxRow:
    row = OutboxRow(mailbox_id=mailbox_id, ticket_id=ticket_id, kind=kind,
                    message_id=out.message_id, sender=out.sender, recipient=out.recipients[0],
                    recipients=list(out.recipients), subject=out.subject, raw=out.raw,
                    auto=auto, status="queued", attempts=0, next_attempt_at=now,
                    created_at=now, in_sent_folder=False)
    session.add(row)
    session.flush()
    if ticket_id is not None:
        repo.add_event(session, ticket_id, now, f"{kind}_queued", message_id=out.message_id,
                       to=out.recipients[0])
    return row


SENT_COPY_CHUNK = 25  # messages APPENDed to Sent per mark in the database


@dataclass
class DeliveryReport:
    sent: list[str] = field(default_factory=list)
    retry: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    base_delay: timedelta = timedelta(minutes=1)
    max_delay: timedelta = timedelta(hours=1)
    stale_after: timedelta = timedelta(minutes=10)

    def delay(self, attempts: int) -> timedelta:
        return min(self.base_delay * (2 ** max(attempts - 1, 0)), self.max_delay)


class OutboxSender:
    def __init__(self, sessions: sessionmaker[Session], clock: Clock, send: SendFn, *,
                 own_addresses: Sequence[str], policy: RetryPolicy | None = None,
                 append_sent: AppendFn | None = None, window_days: int = 7,
                 calendar: BusinessCalendar | None = None) -> None:
        self.sessions = sessions
        self.calendar = calendar  # a sent reply's FRT figures, as ingest stores them
        self.clock = clock
        self.send = send
        self.own = frozenset(a.lower() for a in own_addresses)
        self.policy = policy or RetryPolicy()
        self.append_sent = append_sent
        self.window = timedelta(days=window_days)

    def deliver_due(self, limit: int = 500) -> DeliveryReport:
        report = DeliveryReport()
        self.requeue_stale()
        for _ in range(limit):
            claimed = self._claim()
            if claimed is None:
                break
            self._deliver(claimed, report)
        self.copy_to_sent()
        return report

    def requeue_stale(self) -> int:
        cutoff = self.clock.now() - self.policy.stale_after
        with self.sessions.begin() as s:
            res = s.execute(update(OutboxRow).where(
                OutboxRow.status == "sending", OutboxRow.claimed_at < cutoff).values(
                status="queued"))
            return int(getattr(res, "rowcount", 0) or 0)

    def _claim(self) -> tuple[int, bytes, str, list[str], str] | None:
        """Claim the oldest due row: a conditional UPDATE, so exactly one caller wins it.

        SKIP LOCKED keeps PostgreSQL claimers apart; SQLite ignores FOR UPDATE, so two
        senders there (the daemon's scheduler job and its main loop, or a second
        process) could both read the same queued row. Only the one whose UPDATE
        still finds it queued sends it; the other goes on to the next row.
        """
        now = self.clock.now()
        while True:
            with self.sessions.begin() as s:
                row = s.scalars(select(OutboxRow).where(
                    OutboxRow.status == "queued", OutboxRow.next_attempt_at <= now).order_by(
                    OutboxRow.id).limit(1).with_for_update(skip_locked=True)).first()
                if row is None:
                    return None
                claimed = s.execute(update(OutboxRow).where(
                    OutboxRow.id == row.id, OutboxRow.status == "queued").values(
                    status="sending", claimed_at=now, attempts=OutboxRow.attempts + 1
                ).execution_options(synchronize_session=False))
                if getattr(claimed, "rowcount", 0) == 1:
                    return row.id, row.raw, row.sender, list(row.recipients), row.message_id

    def _deliver(self, claimed: tuple[int, bytes, str, list[str], str],
                 report: DeliveryReport) -> None:
        row_id, raw, sender, recipients, message_id = claimed
        try:
            self.send(raw, sender, recipients)
        except SendError as exc:
            self._failed_attempt(row_id, exc, report)
            return
        except MaildError as exc:
            self._failed_attempt(row_id, SendError(str(exc)), report)
            return
        self._mark_sent(row_id)
        report.sent.append(message_id)
        log.info("sent %s to %s", message_id, ", ".join(recipients))

    def _mark_sent(self, row_id: int) -> None:
        now = self.clock.now()
        with self.sessions.begin() as s:
            row = s.get_one(OutboxRow, row_id)
            row.status, row.sent_at, row.last_error = "sent", now, None
            if row.ticket_id is not None:
                writer = TicketWriter(s, row.mailbox_id, self.own, self.window, self.calendar)
                writer.add(parse_message(row.raw), row.raw, role="sent", folder=None,
                           uidvalidity=None, uid=None, internaldate=now, now=now, auto=row.auto)
                repo.add_event(s, row.ticket_id, now, f"{row.kind}_sent",
                               message_id=row.message_id, to=row.recipient)

    def _failed_attempt(self, row_id: int, exc: SendError, report: DeliveryReport) -> None:
        now = self.clock.now()
        with self.sessions.begin() as s:
            row = s.get_one(OutboxRow, row_id)
            row.last_error = str(exc)[:2000]
            give_up = exc.permanent or row.attempts >= self.policy.max_attempts
            if give_up:
                row.status = "failed"
                report.failed.append(row.message_id)
                log.error("send of %s FAILED for good after %d attempt(s): %s",
                          row.message_id, row.attempts, exc)
                if row.ticket_id is not None:
                    repo.add_event(s, row.ticket_id, now, f"{row.kind}_failed",
                                   message_id=row.message_id, error=str(exc)[:500],
                                   attempts=row.attempts)
                    if exc.reason:
                        for address in dict.fromkeys(row.recipients):
                            delivery_failed(s, row.ticket_id, now, address=address,
                                            status=exc.reason, diagnostic=str(exc))
                return
            row.status = "queued"
            row.next_attempt_at = now + self.policy.delay(row.attempts)
            report.retry.append(row.message_id)
            log.warning("send of %s failed (attempt %d), retry at %s: %s", row.message_id,
                        row.attempts, row.next_attempt_at.isoformat(), exc)

    def copy_to_sent(self, limit: int = 500) -> int:
        """APPEND sent messages to the Sent folder (retried until it works), marking
        them chunk by chunk: a crash mid-copy leaves at most one chunk to copy twice."""
        if self.append_sent is None:
            return 0
        copied = 0
        while copied < limit:
            with self.sessions() as s:
                rows = s.execute(select(OutboxRow.id, OutboxRow.raw).where(
                    OutboxRow.status == "sent", OutboxRow.in_sent_folder.is_(False)).order_by(
                    OutboxRow.id).limit(SENT_COPY_CHUNK)).all()
            if not rows:
                break
            try:
                self.append_sent([raw for _, raw in rows])
            except MaildError as exc:
                log.warning("could not copy %d sent message(s) to Sent, will retry: %s",
                            len(rows), exc)
                break
            with self.sessions.begin() as s:
                s.execute(update(OutboxRow).where(OutboxRow.id.in_([i for i, _ in rows]))
                          .values(in_sent_folder=True))
            copied += len(rows)
        return copied
