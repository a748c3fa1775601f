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
from collections.abc import Callable
from types import FrameType

from maild.app import App
from maild.poller import CycleReport

log = logging.getLogger("maild.daemon")


def _log_cycle(address: str) -> Callable[[CycleReport], None]:
    def report(rep: CycleReport) -> None:
        if rep.stored:
            log.info("%s: stored %d message(s), %d new ticket(s)", address, rep.stored,
                     rep.new_tickets)
    return report


def run_once(app: App, progress: Callable[[str], None] | None = None) -> list[CycleReport]:
    reports = []
    for i, mb in enumerate(app.config.mailboxes):
        rep = app.poller(i).run_once(progress)
        _log_cycle(mb.address)(rep)
        reports.append(rep)
    return reports


def run_forever(app: App, stop: threading.Event | None = None) -> None:
    stop = stop or threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s: stopping after the current batch", signal.Signals(signum).name)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    threads = []
    for i, mb in enumerate(app.config.mailboxes):
        poller = app.poller(i)
        t = threading.Thread(target=poller.watch, name=f"poll-{mb.address}", daemon=True,
                             args=(stop, _log_cycle(mb.address), float(mb.poll_seconds),
                                   mb.idle))
        t.start()
        threads.append(t)
    log.info("maild running: %d mailbox(es)", len(threads))
    while not stop.wait(1.0):
        pass
    for t in threads:
        t.join(timeout=10)
    log.info("maild stopped")
