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
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from maild.calendar import BusinessCalendar
from maild.clock import Clock
from maild.compose import Outgoing
from maild.errors import MaildError, SendError
from maild.metrics import note
from maild.parse import parse_message
from maild.sending import ConnectFn, Refusal, SendFn, SendResult
from maild.sla import set_status
from maild.store import repo
from maild.store.models import OutboxRow, Ticket
from maild.tickets import TicketWriter, log_stored
from maild.undeliverable import delivery_failed

log = logging.getLogger("maild.outbox")

AppendFn = Callable[[Sequence[bytes]], None]


def enqueue(session: Session, out: Outgoing, *, mailbox_id: int, ticket_id: int | None,
            kind: str, now: datetime, auto: bool = True,
            on_sent: dict[str, str] | None = None) -> OutboxRow:
    """Queue `out`; `on_sent` ({"status", "actor"}) is applied to the ticket once the
    server accepts the message, and withheld (an event says why) if it fails for good."""
    row = OutboxRow(mailbox_id=mailbox_id, ticket_id=ticket_id, kind=kind,
                    message_id=out.message_id, sender=out.sender, recipient=out.recipients[0],
                    recipients=list(out.recipients), subject=out.subject, raw=out.raw,
                    auto=auto, status="queued", attempts=0, next_attempt_at=now,
                    created_at=now, in_sent_folder=False, on_sent=on_sent)
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
    held: list[str] = field(default_factory=list)  # claimed max_attempts times, never marked


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
                 connect: ConnectFn | None = None,
                 calendar: BusinessCalendar | None = None) -> None:
        self.sessions = sessions
        self.calendar = calendar  # a sent reply's FRT figures, as ingest stores them
        self.clock = clock
        self.send = send
        self.connect = connect  # given: one connection for a whole batch
        self.own = frozenset(a.lower() for a in own_addresses)
        self.policy = policy or RetryPolicy()
        self.append_sent = append_sent
        self.window = timedelta(days=window_days)

    def deliver_due(self, limit: int = 500) -> DeliveryReport:
        """Send what is due, one connection for the batch when `connect` was given. A lost
        connection ends the batch: the rows not yet claimed stay queued for the next run."""
        report = DeliveryReport()
        report.held += self.requeue_stale()
        report.failed += self._fail_exhausted()
        with self._connection() as send:
            for _ in range(limit):
                claimed = self._claim()
                if claimed is None or not self._deliver(claimed, send, report):
                    break
        self.copy_to_sent()
        return report

    def _connection(self) -> AbstractContextManager[SendFn]:
        return self.connect() if self.connect is not None else nullcontext(self.send)

    def requeue_stale(self) -> list[str]:
        """Queue again the claims older than `stale_after` (the sender died, or could not
        mark the row, after sending maybe): sent again with the same Message-ID. A row
        already claimed `max_attempts` times is held instead (returned): never sent
        again, so a database that keeps refusing the mark cannot mail on forever."""
        cutoff = self.clock.now() - self.policy.stale_after
        with self.sessions.begin() as s:
            stale = s.scalars(select(OutboxRow).where(
                OutboxRow.status == "sending", OutboxRow.claimed_at < cutoff).with_for_update(
                skip_locked=True)).all()
            held = [done for row in stale if row.attempts >= self.policy.max_attempts
                    and (done := self._hold(s, row)) is not None]
            s.execute(update(OutboxRow).where(
                OutboxRow.status == "sending", OutboxRow.claimed_at < cutoff).values(
                status="queued").execution_options(synchronize_session=False))
        for row_id, message_id, attempts in held:
            log.error("outbox row %d (%s) HELD after %d attempt(s): sent maybe, but never "
                      "marked sent; it will not be sent again (docs/operations.md, Outbox)",
                      row_id, message_id, attempts)
        return [message_id for _, message_id, _ in held]

    def _hold(self, s: Session, row: OutboxRow) -> tuple[int, str, int] | None:
        """Hold one exhausted stale row; None if another sender got to it first."""
        now = self.clock.now()
        error = (f"claimed {row.attempts} time(s) and never marked sent (the database "
                 "refused the mark, or the sender died each time); held")
        res = s.execute(update(OutboxRow).where(
            OutboxRow.id == row.id, OutboxRow.status == "sending").values(
            status="held", last_error=error).execution_options(synchronize_session=False))
        if getattr(res, "rowcount", 0) != 1:
            return None
        if row.ticket_id is not None:
            repo.add_event(s, row.ticket_id, now, f"{row.kind}_held",
                           message_id=row.message_id, attempts=row.attempts)
            self._withhold(s, row, "its sending could not be confirmed", now)
        return row.id, row.message_id, row.attempts

    def _fail_exhausted(self) -> list[str]:
        """Fail the queued rows already tried `max_attempts` times (the claim skips them):
        left by a lower `max_attempts` in the config, or by a maild before the bound."""
        now = self.clock.now()
        with self.sessions.begin() as s:
            rows = s.scalars(select(OutboxRow).where(
                OutboxRow.status == "queued", OutboxRow.attempts >= self.policy.max_attempts
            ).with_for_update(skip_locked=True)).all()
            for row in rows:
                row.status = "failed"
                row.last_error = (f"tried {row.attempts} time(s), max_attempts is "
                                  f"{self.policy.max_attempts}: not sent again")
                if row.ticket_id is not None:
                    self._record_failure(s, row, SendError(row.last_error), now)
            failed = [(row.message_id, row.last_error) for row in rows]
        for message_id, error in failed:
            log.error("send of %s FAILED for good: %s", message_id, error)
        return [message_id for message_id, _ in failed]

    def _claim(self) -> tuple[int, bytes, str, list[str], str] | None:
        """Claim the oldest due row: a conditional UPDATE, so exactly one caller wins it.

        SKIP LOCKED keeps PostgreSQL claimers apart; SQLite ignores FOR UPDATE, so two
        senders there (the daemon's scheduler job and its main loop, or a second
        process) could both read the same queued row. Only the one whose UPDATE
        still finds it queued sends it; the other goes on to the next row. A row
        claimed `max_attempts` times is never claimed again (`requeue_stale` holds it).
        """
        now = self.clock.now()
        while True:
            with self.sessions.begin() as s:
                row = s.scalars(select(OutboxRow).where(
                    OutboxRow.status == "queued", OutboxRow.next_attempt_at <= now,
                    OutboxRow.attempts < self.policy.max_attempts).order_by(
                    OutboxRow.id).limit(1).with_for_update(skip_locked=True)).first()
                if row is None:
                    return None
                claimed = s.execute(update(OutboxRow).where(
                    OutboxRow.id == row.id, OutboxRow.status == "queued").values(
                    status="sending", claimed_at=now, attempts=OutboxRow.attempts + 1
                ).execution_options(synchronize_session=False))
                if getattr(claimed, "rowcount", 0) == 1:
                    return row.id, row.raw, row.sender, list(row.recipients), row.message_id

    def _deliver(self, claimed: tuple[int, bytes, str, list[str], str], send: SendFn,
                 report: DeliveryReport) -> bool:
        """Send one claimed row; False when the connection is lost (end the batch)."""
        row_id, raw, sender, recipients, message_id = claimed
        try:
            result = send(raw, sender, recipients)
        except SendError as exc:
            self._failed_attempt(row_id, exc, report)
            return not exc.connection_lost
        except MaildError as exc:
            self._failed_attempt(row_id, SendError(str(exc)), report)
            return True
        refused = result.refused if isinstance(result, SendResult) else ()
        self._mark_sent(row_id, refused)
        report.sent.append(message_id)
        log.info("sent %s to %s", message_id, ", ".join(
            r for r in recipients if r not in {x.address for x in refused}))
        for r in refused:
            log.warning("sent %s, but %s refused it: %s %s (not retried: the others have it)",
                        message_id, r.address, r.code, r.message)
        return True

    def _mark_sent(self, row_id: int, refused: Sequence[Refusal] = ()) -> None:
        now = self.clock.now()
        with self.sessions.begin() as s:
            row = s.get_one(OutboxRow, row_id)
            row.status, row.sent_at = "sent", now
            note(s, "outbox_sent", row.kind)
            row.last_error = "; ".join(r.describe() for r in refused)[:2000] or None
            if row.ticket_id is None:
                return
            writer = TicketWriter(s, row.mailbox_id, self.own, self.window, self.calendar)
            stored = writer.add(parse_message(row.raw), row.raw, role="sent", folder=None,
                                uidvalidity=None, uid=None, internaldate=now, now=now,
                                auto=row.auto)
            if stored is not None:
                log_stored(s, stored)
            repo.add_event(s, row.ticket_id, now, f"{row.kind}_sent",
                           message_id=row.message_id, to=row.recipient)
            for r in refused:
                delivery_failed(s, row.ticket_id, now, address=r.address, status=r.status,
                                diagnostic=f"{r.code} {r.message}")
            self._apply_on_sent(s, row, now)

    def _apply_on_sent(self, s: Session, row: OutboxRow, now: datetime) -> None:
        """The status change that waited for this message (a macro's `solved`), unless
        the customer wrote since it was queued: that message is not answered by it."""
        status = (row.on_sent or {}).get("status")
        if not status or row.ticket_id is None:
            return
        ticket = s.get_one(Ticket, row.ticket_id)
        if ticket.last_customer_at is not None and ticket.last_customer_at > row.created_at:
            repo.add_event(s, ticket.id, now, "status_withheld", status=status,
                           message_id=row.message_id,
                           reason="the customer wrote after the reply was queued")
            return
        set_status(s, ticket, status, now, actor=(row.on_sent or {}).get("actor", "maild"),
                   reason="reply_sent")

    def _withhold(self, s: Session, row: OutboxRow, why: str, now: datetime) -> None:
        """The status change that waited for this message will not happen: say why."""
        status = (row.on_sent or {}).get("status")
        if status and row.ticket_id is not None:
            repo.add_event(s, row.ticket_id, now, "status_withheld", status=status,
                           message_id=row.message_id, reason=f"the reply was not sent: {why}"[:500])

    def _failed_attempt(self, row_id: int, exc: SendError, report: DeliveryReport) -> None:
        now = self.clock.now()
        with self.sessions.begin() as s:
            row = s.get_one(OutboxRow, row_id)
            row.last_error = str(exc)[:2000]
            message_id, attempts = row.message_id, row.attempts
            give_up = exc.permanent or row.attempts >= self.policy.max_attempts
            if give_up:
                row.status = "failed"
                report.failed.append(row.message_id)
                if row.ticket_id is not None:
                    self._record_failure(s, row, exc, now)
            else:
                row.status = "queued"
                row.next_attempt_at = now + self.policy.delay(row.attempts)
                report.retry.append(row.message_id)
                retry_at = row.next_attempt_at
        if give_up:
            log.error("send of %s FAILED for good after %d attempt(s): %s", message_id,
                      attempts, exc)
        else:
            log.warning("send of %s failed (attempt %d), retry at %s: %s", message_id,
                        attempts, retry_at.isoformat(), exc)

    def _record_failure(self, s: Session, row: OutboxRow, exc: SendError,
                        now: datetime) -> None:
        """The events of a message that failed for good: `<kind>_failed`, a
        `delivery_failed` per recipient that did not get it, a withheld status."""
        assert row.ticket_id is not None
        repo.add_event(s, row.ticket_id, now, f"{row.kind}_failed", message_id=row.message_id,
                       error=str(exc)[:500], attempts=row.attempts)
        if exc.refused:
            for r in exc.refused:
                delivery_failed(s, row.ticket_id, now, address=r.address, status=r.status,
                                diagnostic=f"{r.code} {r.message}")
        elif exc.reason:
            for address in dict.fromkeys(row.recipients):
                delivery_failed(s, row.ticket_id, now, address=address, status=exc.reason,
                                diagnostic=str(exc))
        self._withhold(s, row, str(exc), now)

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
