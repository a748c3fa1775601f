"""History import: a big mailbox's first `maild run --once`, and the ceiling of each stage.

Fills a private Dovecot INBOX with N generated support mails (bench.mailgen) that
arrived 17 to 3 days ago, so all of it is history (older than
`autoreply.max_age_hours`), then prints in one run:

1. raw FETCH: a bare imapclient SELECT + FETCH BODY.PEEK[] INTERNALDATE of every
   message (the first 100,000 of a bigger INBOX) in batches of 200, msg/s (the IMAP
   ceiling);
2. fetch + parse: the same fetch, each batch parsed by maild's `ParsePool` (worker
   processes, both cores) while the next is fetched (the ceiling of any import that
   parses every message as maild does);
3. per database: the wall time of `maild run --once` as a child process, process
   start included (`db upgrade` before it, not timed), msg/s, its share of (1) and
   (2), and the peak RSS of the main process and of the largest parse worker.

Target: >= 1,000 msg/s for `run --once` on each backend.

    .venv/bin/python -m bench.history                    # 10,000 messages, both backends
    .venv/bin/python -m bench.history --quick            # smoke test
    .venv/bin/python -m bench.history --profile --db sqlite   # in-process, profiled
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.common import (
    PASSWORD_ENV,
    REPO,
    MailStack,
    all_uids,
    database,
    log_to_file,
    make_parser,
    parse,
    verdict,
)
from bench.ingest import FETCH_ITEMS, build, maild_ingest, raw_fetch
from bench.mailgen import fill
from maild.parsepool import ParsedBatch, ParsePool

TARGET = 1000.0
CEILING_SAMPLE = 100_000  # the stage ceilings are rates: a bigger mailbox is sampled


def fetch_and_parse(stack: MailStack, batch: int = 200, limit: int | None = None
                    ) -> tuple[int, float]:
    """Fetch every message (the first `limit`) and parse it in the pool, pipelined like
    maild's history lane (one batch parsing while the next is fetched); (n, s), pool
    start included."""
    started = time.perf_counter()
    pool = ParsePool()
    client = stack.imap()
    count = 0
    try:
        info = client.select_folder("INBOX", readonly=True)
        uids = all_uids(client, int(info[b"UIDNEXT"]))[:limit]
        inflight: deque[Future[ParsedBatch]] = deque()
        for i in range(0, len(uids), batch):
            data = client.fetch(uids[i:i + batch], FETCH_ITEMS)
            inflight.append(pool.submit([item[b"BODY[]"] for item in data.values()]))
            while len(inflight) > pool.workers:
                count += len(inflight.popleft().result().parsed)
        while inflight:
            count += len(inflight.popleft().result().parsed)
    finally:
        client.logout()
        pool.close()
    return count, time.perf_counter() - started


def run_once_child(stack: MailStack, config: Path, log: Path) -> tuple[float, int]:
    """`maild run --once` in a fresh interpreter; (wall seconds, exit code)."""
    env = {"PATH": "/usr/bin:/bin", PASSWORD_ENV: stack.acct.password}
    started = time.perf_counter()
    global _CHILD_CPU
    before = _children_cpu()
    with log.open("w") as err:
        proc = subprocess.run([sys.executable, "-m", "maild.cli", "--config", str(config),
                               "run", "--once"], env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                              stderr=err, timeout=6 * 3600)
    _CHILD_CPU = _children_cpu() - before
    return time.perf_counter() - started, proc.returncode


_CHILD_CPU = 0.0  # CPU seconds of the last `maild run --once` and its parse workers


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb() -> float:
    """The largest peak RSS among this process's finished children (the last maild run
    and its parse workers), in MB."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def one_backend(stack: MailStack, kind: str, count: int, ceilings: tuple[float, float],
                profile: bool) -> bool:
    raw_rate, parse_rate = ceilings
    with database(kind, Path(stack.workdir)) as url:
        app = build(stack, url)  # the schema, upgraded; not timed
        if profile:
            stored, _q, seconds, _cpu = maild_ingest(app, True)
            app.engine.dispose()
            print(f"history {kind} (in-process, profiled): {stored} stored in {seconds:.1f} s")
            return True
        config = Path(app.config.path)
        app.engine.dispose()
        seconds, code = run_once_child(stack, config, Path(stack.workdir) / f"run-{kind}.log")
        with database_check(url) as stored:
            pass
    rate = stored / seconds
    ok = code == 0 and stored == count and rate >= TARGET
    print(f"history {kind}: `maild run --once` {rate:,.0f} msg/s ({stored:,} messages in "
          f"{seconds:.1f} s, process start included; exit {code}); "
          f"{rate / raw_rate:.0%} of raw FETCH, {rate / parse_rate:.0%} of fetch + parse; "
          f"CPU {_CHILD_CPU / max(stored, 1) * 1000:.1f} ms/msg (main + workers); "
          f"peak RSS {peak_rss_mb():.0f} MB; load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores; target >= {TARGET:,.0f} msg/s {verdict(ok)}",
          flush=True)
    return ok


class database_check:  # noqa: N801  (a context manager read like a function)
    """Count the stored messages of a database before it is dropped."""

    def __init__(self, url: str) -> None:
        self.url = url

    def __enter__(self) -> int:
        import sqlalchemy as sa

        engine = sa.create_engine(self.url)
        try:
            with engine.connect() as conn:
                return int(conn.execute(sa.text("SELECT count(*) FROM messages")).scalar_one())
        finally:
            engine.dispose()

    def __exit__(self, *exc: object) -> None:
        return None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(make_parser(__doc__.splitlines()[0], default=10000, quick=500), argv)
    with MailStack() as stack:
        log_to_file(Path(stack.workdir) / "bench.log")
        end = datetime.now(UTC) - timedelta(days=3)
        print(fill(stack, args.messages, end=end), flush=True)
        sample = min(args.messages, CEILING_SAMPLE)
        raw_n, raw_s = raw_fetch(stack, limit=sample)
        parsed_n, parsed_s = fetch_and_parse(stack, limit=sample)
        raw_rate, parse_rate = raw_n / raw_s, parsed_n / parsed_s
        print(f"stage ceilings: raw FETCH {raw_rate:,.0f} msg/s; fetch + parse "
              f"({ParsePool().workers} worker processes) {parse_rate:,.0f} msg/s "
              f"({parse_rate / raw_rate:.0%} of raw)"
              f"{f'; over the first {sample:,} messages' if sample < args.messages else ''}",
              flush=True)
        ok = [one_backend(stack, kind, args.messages, (raw_rate, parse_rate), args.profile)
              for kind in args.backends]
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main())
