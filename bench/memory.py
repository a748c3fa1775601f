"""Memory: maild's resident set size while it ingests N messages in one run.

The figure is taken at the target's size, 100,000 messages, by default. The
machine's load average is printed beside it (other work on the host slows the
run; RSS is what is measured, and it does not depend on speed). The parent
fills a private Dovecot INBOX (bench.mailgen); a fresh child process
(multiprocessing "spawn", so the fill's memory is not counted) builds the App
(real rules and automation, database upgraded), records its idle RSS as the
baseline, then runs the mailbox's poller once (`Poller.run_once`: every message
fetched in batches of 200, stored, rules applied). A thread samples VmRSS every
50 ms; the RSS is also read when 25%, 50% and 100% of the messages are stored.
Target: peak <= 200 MB, and flat (RSS at 100% at most 20 MB above RSS at 25%).

    .venv/bin/python -m bench.memory                       # 100,000 messages (the target)
    .venv/bin/python -m bench.memory --messages 20000      # a shorter run
    .venv/bin/python -m bench.memory --quick --db both
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import (
    PASSWORD_ENV,
    MailStack,
    database,
    log_to_file,
    make_parser,
    parse,
    proc_status_mb,
    verdict,
    write_config,
)
from bench.mailgen import fill

TARGET_MB = 200.0
FLAT_MB = 20.0
MARKS = (0.25, 0.50, 1.00)


@dataclass
class Tracker:
    """Peak RSS from a sampling thread, plus RSS and time at the progress marks."""

    total: int
    done: int = 0
    peak: float = 0.0
    started: float = field(default_factory=time.perf_counter)
    marks: dict[float, tuple[float, float]] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def sample(self) -> None:
        while not self.stop.wait(0.05):
            self.peak = max(self.peak, proc_status_mb("VmRSS"))

    def progress(self, count: int) -> None:
        self.done += count
        for mark in MARKS:
            if mark not in self.marks and self.done >= mark * self.total:
                rss = proc_status_mb("VmRSS")
                self.peak = max(self.peak, rss)
                self.marks[mark] = (rss, time.perf_counter() - self.started)


def child(config: str, password: str, total: int, log_path: str, out: Any) -> None:
    """Runs in a fresh interpreter: build the App, ingest everything, report RSS."""
    from maild.app import build_app
    from maild.config import load_config
    from maild.store.db import upgrade

    log_to_file(Path(log_path))
    app = build_app(load_config(config), environ={PASSWORD_ENV: password})
    upgrade(app.engine)
    app.automation()
    poller = app.poller(0)
    baseline = proc_status_mb("VmRSS")
    tracker = Tracker(total)
    original = poller.ingestor.ingest_batch

    def counting(role: str, folder: str, uidvalidity: int | None, items: Sequence[Any],
                 highest_modseq: int | None = None) -> Any:
        result = original(role, folder, uidvalidity, items, highest_modseq)
        tracker.progress(len(items))
        return result

    poller.ingestor.ingest_batch = counting  # type: ignore[method-assign]
    sampler = threading.Thread(target=tracker.sample, daemon=True)
    sampler.start()
    report = poller.run_once()
    tracker.stop.set()
    sampler.join()
    out.put({"baseline": baseline, "peak": tracker.peak, "hwm": proc_status_mb("VmHWM"),
             "marks": tracker.marks, "stored": report.stored,
             "seconds": time.perf_counter() - tracker.started})


def run_child(stack: MailStack, kind: str, total: int) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    with database(kind, stack.workdir) as url:
        config = write_config(stack.workdir, stack.acct, url)
        proc = ctx.Process(target=child, args=(str(config), stack.acct.password, total,
                                               str(stack.workdir / "maild.log"), queue))
        proc.start()
        result = _wait_result(proc, queue)
        proc.join()
    return result


def _wait_result(proc: Any, queue: Any) -> dict[str, Any]:
    """The child's result; fail (not hang) when the child dies without one."""
    import queue as queue_mod

    while True:
        try:
            found: dict[str, Any] = queue.get(timeout=5)
            return found
        except queue_mod.Empty:
            if not proc.is_alive():
                raise RuntimeError(f"the ingesting child exited with {proc.exitcode} "
                                   "and no result (see maild.log in its work directory)"
                                   ) from None


def report(kind: str, total: int, r: dict[str, Any]) -> bool:
    marks = r["marks"]
    rss = {m: marks.get(m, (float("nan"), 0.0))[0] for m in MARKS}
    peak = max(r["peak"], r["hwm"])
    flat = rss[1.0] - rss[0.25] <= FLAT_MB
    ok = peak <= TARGET_MB and flat
    print(f"memory {kind}: {total} msgs, RSS at 25% {rss[0.25]:.0f} MB, 50% {rss[0.5]:.0f} MB, "
          f"100% {rss[1.0]:.0f} MB, peak {peak:.0f} MB; idle baseline {r['baseline']:.0f} MB, "
          f"peak/baseline {peak / r['baseline']:.2f}x (target peak <= {TARGET_MB:.0f} MB and "
          f"flat within {FLAT_MB:.0f} MB) {verdict(ok)}")
    rates = []
    prev_n, prev_t = 0.0, 0.0
    for m in MARKS:
        n, t = m * total, marks.get(m, (0.0, 0.0))[1]
        rate = f"{(n - prev_n) / (t - prev_t):,.0f}" if t - prev_t > 0.01 else "- (same batch)"
        rates.append(f"{int(prev_n / total * 100)}-{int(m * 100)}% {rate} msg/s")
        prev_n, prev_t = n, t
    print(f"memory {kind}: throughput during the run {', '.join(rates)} "
          f"({r['stored']} stored in {r['seconds']:.0f} s)", flush=True)
    return ok


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(make_parser(__doc__.splitlines()[0], default=100000, quick=400,
                             backends="sqlite"), argv)
    with MailStack() as stack:
        print(fill(stack, args.messages), flush=True)
        ok = []
        for kind in args.backends:
            print(f"memory {kind}: start, {load()}", flush=True)
            ok.append(report(kind, args.messages, run_child(stack, kind, args.messages)))
            print(f"memory {kind}: end, {load()}", flush=True)
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main())
