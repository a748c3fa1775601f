"""Latency: customer mail APPENDed to INBOX -> ETA auto-reply accepted by the SMTP server.

Starts a private Dovecot and SMTP sink, and the real daemon (`maild run`, IDLE on,
a child process) on a fresh database with `[autoreply] global_per_hour` high; then
APPENDs one customer mail at a time, each from a new sender (so the per-sender
limit never suppresses), and waits for its auto-reply at the sink. Latency is the
sink's receive time minus the time just before APPEND. The baseline, measured on
the same APPENDs, is a bare imapclient connection IDLEing on INBOX: when it sees
the new EXISTS (the floor for any IMAP-driven daemon). The daemon's own timestamps
(message stored, outbox row) split maild's latency into "APPEND -> stored" and
"stored -> SMTP". Targets: p50 <= 1.5 s, p99 <= 3 s.

    .venv/bin/python -m bench.latency                   # 200 messages
    .venv/bin/python -m bench.latency --quick           # 10 messages
    .venv/bin/python -m bench.latency --history 10000   # the same while a first run
                                                        # imports 10,000 old messages

With `--history N`, INBOX first holds N generated support mails that arrived 17 to 3
days ago: the daemon's first run imports them as history (`maild.history`) while the
customer mails arrive, and the line says how far the import was when the last reply
went out (the live lane's latency must not depend on the backlog).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from bench.common import (
    PASSWORD_ENV,
    REPO,
    MailStack,
    database,
    make_parser,
    parse,
    percentile,
    verdict,
    write_config,
)
from bench.mailgen import fill
from maild.store.db import make_engine, upgrade

WARMUP = 2
TIMEOUT = 60.0
P50_TARGET, P99_TARGET = 1.5, 3.0


class IdleWatcher:
    """A bare IMAP client in IDLE on INBOX: when each EXISTS count was first seen."""

    def __init__(self, stack: MailStack) -> None:
        self.client = stack.imap()
        self.client.select_folder("INBOX", readonly=True)
        self.seen: dict[int, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.client.idle()
        while not self.stop.is_set():
            for resp in self.client.idle_check(timeout=0.2):
                if len(resp) == 2 and resp[1] == b"EXISTS":
                    self.seen.setdefault(int(resp[0]), time.time())
        self.client.idle_done()
        self.client.logout()

    def __enter__(self) -> IdleWatcher:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


def customer_mail(i: int, to: str) -> tuple[str, bytes]:
    sender = f"customer{i}.{os.getpid()}@example.org"
    raw = (f"From: Customer {i} <{sender}>\r\nTo: Support <{to}>\r\n"
           f"Subject: Order {10000 + i} has not arrived\r\n"
           f"Message-ID: <latency.{i}.{time.time_ns()}@example.org>\r\n"
           f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime())}\r\n"
           "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
           "Hello, I ordered last week and nothing has arrived yet. Could you check?\r\n"
           "Thanks, a customer\r\n").encode()
    return sender, raw


def start_daemon(stack: MailStack, url: str) -> tuple[subprocess.Popen[bytes], Path]:
    config = write_config(stack.workdir, stack.acct, url, stack.sink, global_per_hour=100000)
    upgrade(make_engine(url))
    log = stack.workdir / "daemon.log"
    env = {**os.environ, PASSWORD_ENV: stack.acct.password}
    with open(log, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "maild.cli", "--config", str(config),
                                 "run"], cwd=REPO, env=env, stdout=err, stderr=err)
    deadline = time.monotonic() + 30
    while b"maild running" not in log.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"maild run did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.05)
    return proc, log


def stop_daemon(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def send_all(stack: MailStack, count: int) -> dict[str, tuple[float, float]]:
    """APPEND one by one, wait for each reply; {sender: (appended, replied)}."""
    assert stack.sink is not None
    out: dict[str, tuple[float, float]] = {}
    client = stack.imap()
    try:
        for i in range(count):
            sender, raw = customer_mail(i, stack.acct.address)
            t0 = time.time()
            client.append("INBOX", raw)
            reply = stack.sink.wait_for(i + 1, timeout=TIMEOUT)[i]
            if sender not in reply.rcpt_tos:
                raise RuntimeError(f"reply {i} went to {reply.rcpt_tos}, expected {sender}")
            out[sender] = (t0, reply.received_at)
    finally:
        client.logout()
    return out


def stored_times(url: str) -> dict[str, float]:
    """When the daemon stored each customer's message (messages.created_at)."""
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT from_addr, created_at FROM messages WHERE direction = 'in'")).all()
    engine.dispose()
    return {addr: (at if isinstance(at, datetime) else datetime.fromisoformat(at))
            .replace(tzinfo=UTC).timestamp() for addr, at in rows}


def summary(values: Sequence[float]) -> str:
    return (f"p50 {percentile(values, .5):.3f} s, p95 {percentile(values, .95):.3f} s, "
            f"p99 {percentile(values, .99):.3f} s, max {max(values):.3f} s")


def report(kind: str, times: dict[str, tuple[float, float]], idle: list[float],
           stored: dict[str, float]) -> bool:
    lat = [done - t0 for t0, done in times.values()]
    p50, p99 = percentile(lat, .5), percentile(lat, .99)
    ok = p50 <= P50_TARGET and p99 <= P99_TARGET
    print(f"latency {kind}: APPEND -> ETA auto-reply at SMTP sink over {len(lat)} msgs: "
          f"{summary(lat)} (target p50 <= {P50_TARGET} s, p99 <= {P99_TARGET} s) {verdict(ok)}")
    print(f"latency {kind}: baseline APPEND -> EXISTS seen by a bare IDLE client: "
          f"{summary(idle)}; maild p50 is {p50 / max(percentile(idle, .5), 1e-6):.2f}x it")
    split_in = [stored[s] - t0 for s, (t0, _) in times.items() if s in stored]
    split_out = [done - stored[s] for s, (_, done) in times.items() if s in stored]
    if split_in:
        print(f"latency {kind}: breakdown APPEND -> stored {summary(split_in)}; "
              f"stored -> SMTP {summary(split_out)}", flush=True)
    return ok


def one_backend(stack: MailStack, kind: str, count: int, history: int = 0) -> bool:
    with database(kind, stack.workdir) as url:
        proc, _log = start_daemon(stack, url)
        try:
            with IdleWatcher(stack) as watcher:
                times = send_all(stack, count + WARMUP)
                progress = history_progress(url) if history else ""
                time.sleep(0.3)
        finally:
            stop_daemon(proc)
        stored = stored_times(url)
    ordered = list(times.items())
    idle = [watcher.seen[history + n + 1] - t0 for n, (_, (t0, _)) in enumerate(ordered)
            if history + n + 1 in watcher.seen][WARMUP:]
    timed = dict(ordered[WARMUP:])
    if history:
        print(f"latency {kind}: during a first run's history import of {history:,} messages; "
              f"history at {progress} when the last reply went out", flush=True)
    return report(kind, timed, idle, stored)


def history_progress(url: str) -> str:
    """"done/total" of the history import (or "finished")."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            row = conn.execute(sa.text("SELECT done, total, finished_at FROM history_imports "
                                       "WHERE role = 'inbox'")).first()
    finally:
        engine.dispose()
    if row is None:
        return "not started"
    return "finished" if row[2] is not None else f"{row[0]:,}/{row[1]:,}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser(__doc__.splitlines()[0], default=200, quick=10, backends="sqlite")
    parser.add_argument("--history", type=int, default=0,
                        help="old messages in INBOX before the daemon starts (default 0)")
    args = parse(parser, argv)
    ok = []
    for kind in args.backends:  # a fresh mailbox each: a new daemon would answer old mail
        with MailStack(smtp=True) as stack:
            if args.history:
                print(fill(stack, args.history, end=datetime.now(UTC) - timedelta(days=3)),
                      flush=True)
            ok.append(one_backend(stack, kind, args.messages, args.history))
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main())
