"""Pull new mail from one mailbox's INBOX and Sent into the Ingestor.

A cycle selects each folder, compares UIDVALIDITY with the stored checkpoint
(a change means: rescan from UID 1, de-duplicating by Message-ID), fetches
UIDs above the checkpoint in batches and hands each batch to the Ingestor,
which commits it with the new checkpoint. `watch` repeats cycles, waiting
with IDLE when the server offers it, and reconnects with capped exponential
backoff. This module never decides threading and never writes SQL.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from functools import partial

from sqlalchemy.exc import SQLAlchemyError

from maild.errors import LoginRefused, MailboxError
from maild.history import HistoryLane
from maild.ingest import BatchResult, IngestItem, Ingestor
from maild.mailbox import MailboxClient
from maild.pollstate import AUTH_FAILURES_UNHEALTHY, MailboxState

log = logging.getLogger("maild.poller")

BACKOFF_START = 1.0
BACKOFF_MAX = 300.0
BatchObserver = Callable[[str, float, BatchResult], None]  # (folder role, seconds, result)
# `run --once` looks at new mail less often during a history import than the daemon
# (which answers live mail within seconds): larger history batches, less overhead
ONCE_HISTORY_SECONDS = 5.0


@dataclass
class CycleReport:
    folders: dict[str, BatchResult] = field(default_factory=dict)

    @property
    def stored(self) -> int:
        return sum(r.stored for r in self.folders.values())

    @property
    def new_tickets(self) -> int:
        return sum(r.new_tickets for r in self.folders.values())

    history_pending: bool = False  # history left to import after this cycle
    history_ran: bool = False  # this cycle imported history (new mail may have come meanwhile)


@dataclass(frozen=True)
class FolderPlan:
    role: str  # inbox | sent
    name: str


class Poller:
    def __init__(self, client_factory: Callable[[], MailboxClient], ingestor: Ingestor, *,
                 inbox: str = "INBOX", sent: str | None = None, batch_size: int = 200,
                 mark_seen: bool = False,
                 lock: Callable[[], AbstractContextManager[bool]] | None = None,
                 state: MailboxState | None = None,
                 observe_batch: BatchObserver | None = None,
                 history: HistoryLane | None = None) -> None:
        self.history = history
        self.lock = lock or (lambda: nullcontext(True))
        self.client_factory = client_factory
        self.ingestor = ingestor
        self.inbox = inbox
        self.sent = sent
        self.batch_size = batch_size
        self.mark_seen = mark_seen
        self.address = str(getattr(ingestor, "address", "mailbox"))  # for log lines
        self.state = state or MailboxState(self.address, 60.0)  # read by /healthz, /metrics
        self.observe_batch = observe_batch
        self._connected = False  # watch(): did the current session complete a cycle?
        self._failures = 0  # watch(): failed attempts since the last good cycle
        self._on_live: Callable[[CycleReport], None] | None = None  # watch(): its on_cycle

    def folders(self, client: MailboxClient) -> list[FolderPlan]:
        sent = self.sent or client.find_special_folder("\\Sent")
        plans = [FolderPlan("inbox", self.inbox)]
        if sent:
            plans.append(FolderPlan("sent", sent))
        else:
            log.warning("no Sent folder found (no SPECIAL-USE \\Sent); set mailbox.sent_folder "
                        "so agent replies count")
        return plans

    def cycle(self, client: MailboxClient, progress: Callable[[str], None] | None = None,
              history_seconds: float | None = None,
              on_live: Callable[[CycleReport], None] | None = None) -> CycleReport:
        """Fetch and ingest everything new in every folder, once (and tell `on_live`, so
        the daemon sends the auto-replies now, not after the history chunk); then import
        history for up to `history_seconds` (default: the lane's chunk_seconds)."""
        report = CycleReport()
        for plan in self.folders(client):
            report.folders[plan.role] = self._folder(client, plan, progress)
        on_live = on_live or self._on_live
        if on_live is not None:
            on_live(report)
        if self.history is not None:  # a bounded chunk of history between live passes
            report.history_pending = self.history.chunk(client, progress, history_seconds)
            report.folders["history"] = self.history.result
            report.history_ran = self.history.ran
        return report

    def _folder(self, client: MailboxClient, plan: FolderPlan,
                progress: Callable[[str], None] | None) -> BatchResult:
        state = self.ingestor.checkpoint(plan.role)
        if state is not None and client.selected != plan.name:
            quick = client.status(plan.name)  # nothing new: no SELECT (seconds for a big one)
            if quick.uidvalidity == state.uidvalidity and 0 < quick.uidnext <= state.last_uid + 1:
                return BatchResult(last_uid=state.last_uid)
        status = client.select(plan.name)
        start = 0
        if state is not None and state.uidvalidity == status.uidvalidity:
            start = state.last_uid
        else:
            if state is not None:
                log.warning("%s: UIDVALIDITY %s -> %s: rescanning", plan.name,
                            state.uidvalidity, status.uidvalidity)
            if self.history is not None:  # old mail goes to the history lane
                start = self.history.split(client, plan.role, status)
        uids = client.uids_above(start)
        total = BatchResult(last_uid=start)
        done = 0
        try:
            for batch in client.fetch(uids, self.batch_size):
                items = [IngestItem(m.uid, m.raw, m.internaldate) for m in batch]
                if self.history is not None and \
                        self.history.prefetch(client, [m.raw for m in batch]):
                    client.select(plan.name)  # the next FETCH reads this folder again
                started = time.perf_counter()
                res = self.ingestor.ingest_batch(plan.role, plan.name, status.uidvalidity,
                                                 items, status.highest_modseq)
                if self.observe_batch is not None:
                    self.observe_batch(plan.role, time.perf_counter() - started, res)
                self.state.succeeded()  # a long first import is progress, not a stale poll
                _merge(total, res)
                done += len(batch)
                if self.mark_seen and plan.role == "inbox" and batch:
                    client.add_flags([m.uid for m in batch], ["\\Seen"])
                if progress and len(uids) > self.batch_size:
                    progress(f"{plan.name}: {done}/{len(uids)} messages")
        except (MailboxError, SQLAlchemyError) as exc:
            log.error("%s: %s: interrupted after %d of %d new message(s); committed up to UID "
                      "%d, the next cycle resumes there: %s", self.address, plan.name, done,
                      len(uids), max(total.last_uid, start), _first_line(exc))
            raise
        if not uids and state is None:  # remember UIDVALIDITY of an empty folder
            self.ingestor.ingest_batch(plan.role, plan.name, status.uidvalidity, [],
                                       status.highest_modseq)
        return total

    def run_once(self, progress: Callable[[str], None] | None = None) -> CycleReport:
        with self.lock() as held:
            if not held:
                log.info("%s: another maild instance holds this mailbox; skipped",
                         self.address)
                return CycleReport()
            try:
                with self.client_factory().connect() as client:
                    report = self.cycle(client, progress, ONCE_HISTORY_SECONDS)
                    while report.history_pending:  # live passes between history chunks
                        more = self.cycle(client, progress, ONCE_HISTORY_SECONDS)
                        for role, res in more.folders.items():
                            _merge(report.folders.setdefault(role, BatchResult()), res)
                        report.history_pending = more.history_pending
                    return report
            finally:
                if self.history is not None:
                    self.history.close()

    def watch(self, stop: threading.Event, on_cycle: Callable[[CycleReport], None],
              poll_seconds: float = 60.0, use_idle: bool = True) -> None:
        """Cycle until `stop` is set: IDLE (or sleep) between cycles, reconnect on errors.

        Every failure is one log line naming the mailbox and the next attempt; a
        connection that worked resets the backoff, and its return is logged too.
        """
        try:
            self._watch(stop, on_cycle, poll_seconds, use_idle)
        finally:
            if self.history is not None:
                self.history.close()  # the parse workers exit with the daemon

    def _watch(self, stop: threading.Event, on_cycle: Callable[[CycleReport], None],
               poll_seconds: float, use_idle: bool) -> None:
        backoff = BACKOFF_START
        self._failures = 0
        while not stop.is_set():
            self._connected = False
            try:
                with self.lock() as held:
                    if not self._standby(held):
                        stop.wait(poll_seconds)
                        continue
                    self._session(stop, on_cycle, poll_seconds, use_idle)
                    backoff = BACKOFF_START
                    continue
            except LoginRefused as exc:
                self._failures += 1
                refused = self.state.failed(str(exc), auth=True)
                log.error("%s: %s (%d refused in a row%s); fix: check the login name and the "
                          "password (mailbox.password_env / password_file, or the OAuth2 "
                          "grant), then `maild check`; retrying in %.0f s", self.address, exc,
                          refused, ", reported unhealthy" if refused >= AUTH_FAILURES_UNHEALTHY
                          else "", backoff)
            except MailboxError as exc:
                if self._connected:  # a working session broke: start the backoff afresh
                    backoff = BACKOFF_START
                self._failures += 1
                self.state.failed(str(exc))
                log.error("%s: %s; reconnecting in %.0f s (attempt %d)", self.address,
                          exc, backoff, self._failures)
            except SQLAlchemyError as exc:  # the database is down, locked or busy
                if self._connected:
                    backoff = BACKOFF_START
                self._failures += 1
                self.state.failed(f"database error: {_first_line(exc)}")
                log.error("%s: database error, the batch was rolled back (nothing lost, "
                          "it is fetched again): %s; retrying in %.0f s", self.address,
                          _first_line(exc), backoff)
            except Exception as exc:  # anything else: never let the thread die
                self._failures += 1
                self.state.failed(_first_line(exc))
                log.exception("%s: mailbox cycle failed; retrying in %.0f s",
                              self.address, backoff)
            stop.wait(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    def _standby(self, held: bool) -> bool:
        """Log the moments this instance starts standing by and takes over; return held."""
        if self.state.standing_by(not held):
            if held:
                log.info("%s: taking over: the instance that held this mailbox stopped",
                         self.address)
            else:
                log.info("%s: standing by: another maild instance holds this mailbox (its "
                         "PostgreSQL advisory lock); taking over if it stops", self.address)
        return held

    def _session(self, stop: threading.Event, on_cycle: Callable[[CycleReport], None],
                 poll_seconds: float, use_idle: bool) -> None:
        """One IMAP connection: cycle, wait, repeat until stop or an error."""
        with self.client_factory().connect() as client:
            if self._failures:
                log.info("%s: IMAP connection restored after %d failed attempt(s)",
                         self.address, self._failures)
            idle = use_idle and client.has_idle()
            while not stop.is_set():
                told: list[CycleReport] = []  # the live part told before the history chunk
                self._on_live = partial(_tell, told, on_cycle)
                report = self.cycle(client)
                if not told:
                    on_cycle(report)
                self.state.succeeded()
                self._connected, self._failures = True, 0
                if report.history_pending or report.history_ran:
                    continue  # straight on: a live pass (mail that came during the chunk:
                    # IDLE would not report it), then the next history chunk if any
                left = client.seconds_until_renewal()
                if left is not None and left <= 0:
                    log.debug("%s: OAuth2 token due for renewal: logging in afresh",
                              self.address)
                    return  # watch() reconnects at once, with a fresh token
                self._wait(client, stop, poll_seconds if left is None else
                           min(poll_seconds, left), idle)

    def _wait(self, client: MailboxClient, stop: threading.Event, seconds: float,
              idle: bool) -> None:
        if not idle:
            stop.wait(seconds)
            return
        client.select(self.inbox)
        waited = 0.0
        step = min(seconds, 5.0)  # short IDLE slices so SIGTERM is honoured promptly
        while waited < seconds and not stop.is_set():
            if client.idle_wait(step):
                return
            waited += step


def _tell(told: list[CycleReport], on_cycle: Callable[[CycleReport], None],
          report: CycleReport) -> None:
    told.append(report)
    on_cycle(report)


def _first_line(exc: BaseException) -> str:
    """An exception as one line (SQLAlchemy appends SQL and a help link on more lines)."""
    orig = getattr(exc, "orig", None)  # the driver's own message, without the SQL
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _merge(total: BatchResult, res: BatchResult) -> None:
    total.stored += res.stored
    total.duplicates += res.duplicates
    total.quarantined += res.quarantined
    total.parse_errors += res.parse_errors
    total.new_tickets += res.new_tickets
    total.last_uid = max(total.last_uid, res.last_uid)
    total.ticket_ids.extend(res.ticket_ids)
