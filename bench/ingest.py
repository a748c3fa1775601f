"""Ingest throughput: maild's `run --once` against raw IMAP FETCH of the same mailbox.

Fills a private Dovecot INBOX with N realistic messages (bench.mailgen), then per
database backend: (a) the baseline, a bare imapclient SELECT + UID SEARCH + FETCH
BODY.PEEK[] INTERNALDATE of every message in batches of 200 (exactly what maild's
fetch asks for), and (b) maild's `run --once` in-process (`maild.daemon.run_once`
on an App built from a config, real rules/automation, no SMTP, database upgraded
beforehand and not timed), into a fresh SQLite file or PostgreSQL schema.
Prints msg/s of each and maild's share of the raw rate (target >= 40% on SQLite).

    .venv/bin/python -m bench.ingest                     # 5,000 messages, both backends
    .venv/bin/python -m bench.ingest --messages 20000    # the issue's figure
    .venv/bin/python -m bench.ingest --quick --profile   # smoke test + cProfile top list
"""

from __future__ import annotations

import email
import email.policy
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.common import (
    MailStack,
    all_uids,
    database,
    log_to_file,
    make_parser,
    parse,
    profiled,
    verdict,
    write_config,
)
from bench.mailgen import fill
from maild.app import App, build_app
from maild.config import load_config
from maild.daemon import run_once
from maild.parse import parse_message
from maild.store.db import upgrade

TARGET = 0.40
FETCH_ITEMS = [b"BODY.PEEK[]", b"INTERNALDATE"]


def raw_fetch(stack: MailStack, batch: int = 200, keep: list[bytes] | None = None,
              limit: int | None = None) -> tuple[int, float]:
    """The baseline: fetch every message's bytes (the first `limit`), as fast as
    imapclient can; (n, s). With `keep`, the bytes are also appended to it (a list
    append per message, timed with the rest: negligible)."""
    started = time.perf_counter()
    client = stack.imap()
    try:
        info = client.select_folder("INBOX", readonly=True)
        uids = all_uids(client, int(info[b"UIDNEXT"]))[:limit]
        count = 0
        for i in range(0, len(uids), batch):
            data = client.fetch(uids[i:i + batch], FETCH_ITEMS)
            bodies = [item[b"BODY[]"] for item in data.values() if item.get(b"BODY[]")]
            count += len(bodies)
            if keep is not None:
                keep.extend(bodies)
    finally:
        client.logout()
    return count, time.perf_counter() - started


def parse_floor(raws: list[bytes]) -> tuple[float, float]:
    """What parsing alone costs, in msg/s (best of 3): the stdlib's MIME parser (the
    least any parsing ingest does), and maild's `parse_message` (that, plus bodies,
    date, attachments and addresses through mail-parser). A ceiling for maild's rate,
    whatever its storage does: reported so the ratio can be read against it."""
    def rate(parse: Callable[[bytes], object]) -> float:
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            for raw in raws:
                parse(raw)
            best = min(best, time.perf_counter() - started)
        return len(raws) / best
    return (rate(lambda raw: email.message_from_bytes(raw, policy=email.policy.compat32)),
            rate(parse_message))


def build(stack: MailStack, db_url: str, smtp: bool = False) -> App:
    """An App for the private stack, database upgraded, automation loaded."""
    config = write_config(stack.workdir, stack.acct, db_url, stack.sink if smtp else None)
    app = build_app(load_config(config), environ={"MAILD_BENCH_IMAP_PASSWORD":
                                                  stack.acct.password})
    upgrade(app.engine)
    app.automation()  # the daemon loads rules/macros at start, before any mail
    return app


def maild_ingest(app: App, profile: bool) -> tuple[int, int, float, float]:
    """`maild run --once` in-process; returns (stored, quarantined, seconds, CPU seconds).

    CPU seconds (this process) say what the wall-clock rate cannot on a shared machine."""
    started, cpu = time.perf_counter(), time.process_time()
    with profiled(profile, "maild run --once"):
        reports, _delivery = run_once(app)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    stored = sum(r.stored for r in reports)
    quarantined = sum(f.quarantined for r in reports for f in r.folders.values())
    return stored, quarantined, elapsed, cpu


def report_floor(stack: MailStack) -> None:
    raws: list[bytes] = []
    raw_n, raw_s = raw_fetch(stack, keep=raws)
    raw_rate = raw_n / raw_s
    stdlib, maild = parse_floor(raws)

    def series(parse_rate: float) -> str:  # fetch, then parse, one process: share of raw
        return f"{1 / (1 / raw_rate + 1 / parse_rate) / raw_rate:.0%}"
    print(f"parsing alone: raw FETCH {raw_rate:,.0f} msg/s; stdlib MIME parse {stdlib:,.0f} "
          f"msg/s (fetch + parse in series: {series(stdlib)} of raw FETCH); maild "
          f"parse_message {maild:,.0f} msg/s (in series: {series(maild)}); before any "
          "threading, rule or write", flush=True)


def one_backend(stack: MailStack, kind: str, count: int, profile: bool) -> bool:
    raw_n, raw_s = raw_fetch(stack)
    with database(kind, stack.workdir) as url:
        app = build(stack, url)
        try:
            stored, quarantined, maild_s, cpu_s = maild_ingest(app, profile)
        finally:
            app.engine.dispose()
    if raw_n != count or stored + quarantined != count:
        print(f"ingest {kind}: WARNING raw fetched {raw_n}, maild stored {stored} "
              f"+ quarantined {quarantined}, expected {count}")
    raw_rate, maild_rate = raw_n / raw_s, stored / maild_s
    ratio = maild_rate / raw_rate
    target = f"target >= {TARGET:.0%}" if kind == "sqlite" else "target applies to sqlite"
    print(f"ingest {kind}: raw FETCH {raw_rate:,.0f} msg/s, maild {maild_rate:,.0f} msg/s, "
          f"ratio {ratio:.0%} ({target}; {count} msgs, {maild_s:.1f} s, "
          f"CPU {cpu_s / max(stored, 1) * 1000:.2f} ms/msg, {quarantined} quarantined)"
          + (f" {verdict(ratio >= TARGET)}" if kind == "sqlite" else ""), flush=True)
    return ratio >= TARGET or kind != "sqlite"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(make_parser(__doc__.splitlines()[0], default=5000, quick=300), argv)
    with MailStack() as stack:
        log_to_file(Path(stack.workdir) / "maild.log")
        print(fill(stack, args.messages), flush=True)
        report_floor(stack)
        ok = [one_backend(stack, kind, args.messages, args.profile) for kind in args.backends]
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main())
