"""`maild run`: watch every configured mailbox until SIGTERM/SIGINT.

One thread per mailbox runs its Poller (IDLE or polling, reconnecting on
failure); the main thread waits for a signal and then sets the stop event, so
in-flight batches finish their transaction before exit. `run --once` is a
single cycle over all mailboxes. Decisions live in the services, not here.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError

from maild.app import App
from maild.delivery import deliver_outbox
from maild.outbox import DeliveryReport
from maild.poller import CycleReport
from maild.store.db import DatabaseError, describe_error

if TYPE_CHECKING:
    from maild.httpserver import HttpServer

log = logging.getLogger("maild.daemon")
OUTBOX_INTERVAL = 15.0
DRAIN_SECONDS = 7.0
SIGNAL_SLICE = 0.5  # longest the main thread sleeps without running a signal's handler


def _log_cycle(address: str) -> Callable[[CycleReport], None]:
    def report(rep: CycleReport) -> None:
        if rep.stored:
            log.info("%s: stored %d message(s), %d new ticket(s)", address, rep.stored,
                     rep.new_tickets)
    return report


def run_once(app: App, progress: Callable[[str], None] | None = None
             ) -> tuple[list[CycleReport], DeliveryReport | None]:
    """Fetch all new mail in all mailboxes, run the rules, send the outbox.

    A database error (down, locked past its timeout) becomes one DatabaseError
    line for the CLI: the failed batch was rolled back, the next run redoes it.
    """
    try:
        return _run_once(app, progress)
    except SQLAlchemyError as exc:
        raise DatabaseError(f"{describe_error(app.engine, exc)}; the transaction in progress was "
                            "rolled back (nothing lost), run again") from None


def _run_once(app: App, progress: Callable[[str], None] | None
              ) -> tuple[list[CycleReport], DeliveryReport | None]:
    reports = []
    for i, mb in enumerate(app.config.mailboxes):
        rep = app.poller(i).run_once(progress)
        _log_cycle(mb.address)(rep)
        reports.append(rep)
    from maild.schedule import run_due

    run_due(app)
    delivery = deliver_outbox(app)
    _sync_drafts(app)
    return reports, delivery


def _sync_drafts(app: App) -> None:
    if not any(mb.drafts for mb in app.config.mailboxes):
        return
    from maild.drafts_sync import sync_drafts

    sync_drafts(app)


def _safe_deliver(app: App) -> None:
    try:
        deliver_outbox(app)
        _sync_drafts(app)
    except Exception:  # the daemon must survive a bad pass; rows stay queued
        log.exception("outbox/drafts pass failed")


def _nap(wake: threading.Event, stop: threading.Event, seconds: float) -> None:
    """Wait up to `seconds` for `wake`, in slices of SIGNAL_SLICE. Linux may hand SIGTERM
    to any of our threads, and Python runs its handler only when the main thread next
    runs Python code: one long wait would hold a stop back for all of it."""
    deadline = time.monotonic() + seconds
    while not wake.is_set() and not stop.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            return
        wake.wait(min(left, SIGNAL_SLICE))


def _start_http(app: App) -> HttpServer | None:
    """/healthz and /metrics when `[http] listen` is set (off by default)."""
    if app.config.http.listen is None:
        return None
    from maild.httpserver import HttpServer

    return HttpServer(app, app.config.http.listen).start()


def run_forever(app: App, stop: threading.Event | None = None) -> None:
    stop = stop or threading.Event()
    wake = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s: stopping after the current batch", signal.Signals(signum).name)
        stop.set()
        wake.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    app.automation()  # fail at start, not on the first message
    http = _start_http(app)

    def on_cycle_for(address: str) -> Callable[[CycleReport], None]:
        logger = _log_cycle(address)

        def on_cycle(rep: CycleReport) -> None:
            logger(rep)
            if rep.stored:
                wake.set()
        return on_cycle

    threads = []
    for i, mb in enumerate(app.config.mailboxes):
        poller = app.poller(i)
        t = threading.Thread(target=poller.watch, name=f"poll-{mb.address}", daemon=True,
                             args=(stop, on_cycle_for(mb.address), float(mb.poll_seconds),
                                   mb.idle))
        t.start()
        threads.append(t)
    from maild.schedule import build_scheduler

    scheduler = build_scheduler(app)
    scheduler.start()
    log.info("maild running: %d mailbox(es), scheduler with %d job(s)", len(threads),
             len(scheduler.get_jobs()))
    while not stop.is_set():
        _nap(wake, stop, OUTBOX_INTERVAL)
        if wake.is_set() and not stop.is_set():  # new mail may have queued auto-replies
            wake.clear()
            _safe_deliver(app)
    scheduler.shutdown(wait=True)
    if http is not None:
        http.stop()
    deadline = time.monotonic() + DRAIN_SECONDS  # SIGTERM must exit within 10 s in all
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.monotonic()))
    log.info("maild stopped")
