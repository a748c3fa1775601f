"""Sending: outbox messages per second with one SMTP connection per message vs one reused.

Starts an aiosmtpd sink (`devstack.SmtpSink`; STARTTLS and AUTH, as a real submission
server has them, unless `--plain`) and queues N messages on a ticket of a fresh
database. The baseline is one connection per message (`maild.smtp.send`: connect,
STARTTLS, EHLO, AUTH, MAIL/RCPT/DATA, QUIT each time), what maild did before; the
figure is the same outbox with `connect=maild.smtp.connection` (one connection for
the batch). Both send the same N messages through `OutboxSender.deliver_due` (claim,
send, mark sent, record on the ticket), in the same run, each on its own database;
the SMTP part alone (no database) is printed too. Target: reuse >= 1.5x per-message.

    .venv/bin/python -m bench.sending                  # 500 messages
    .venv/bin/python -m bench.sending --quick          # 50 messages
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from bench.common import database, log_to_file, make_parser, parse, profiled, verdict
from devstack.smtpsink import SmtpSink
from maild.clock import FixedClock
from maild.compose import compose
from maild.ingest import IngestItem, Ingestor
from maild.outbox import OutboxSender, enqueue
from maild.smtp import SmtpSettings, connection, send
from maild.store.db import make_engine, make_sessionmaker, upgrade

TARGET = 1.5
SUPPORT = "support@example.com"
NOW = datetime(2026, 11, 2, 10, tzinfo=UTC)


def raw_mail(frm: str = "Ann <ann@example.org>", to: str = SUPPORT,
             msgid: str = "<m1@example.org>") -> bytes:
    return (f"From: {frm}\r\nTo: {to}\r\nSubject: Order missing\r\n"
            f"Date: Mon, 02 Nov 2026 10:00:00 +0000\r\nMessage-ID: {msgid}\r\n\r\n"
            "Hello, where is my order?\r\n").encode()


def settings(sink: SmtpSink) -> SmtpSettings:
    if sink.starttls:
        return SmtpSettings(sink.host, sink.port, "starttls", sink.username, sink.password,
                            str(sink.ca_file), timeout=30)
    return SmtpSettings(sink.host, sink.port, "none", timeout=30)


def queued_outbox(db_url: str, n: int, sink: SmtpSink, reuse: bool) -> OutboxSender:
    """A fresh database with one ticket and `n` replies queued on it."""
    engine = make_engine(db_url)
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    clock = FixedClock(NOW)
    Ingestor(sessions, clock, SUPPORT).ingest_batch(
        "inbox", "INBOX", 1, [IngestItem(1, raw_mail(), NOW)])
    with sessions.begin() as s:
        for i in range(n):
            out = compose(sender=SUPPORT, sender_name="Support", to=f"c{i}@example.org",
                          to_name="", subject="Re: Order missing [#1]",
                          body=f"Reply {i}.\n" * 20, date=NOW, ticket_id=1,
                          in_reply_to="<m1@example.org>", references=["<m1@example.org>"])
            enqueue(s, out, mailbox_id=1, ticket_id=1, kind="auto_reply", now=NOW)
    s_ = settings(sink)
    return OutboxSender(sessions, clock, partial(send, s_),
                        connect=partial(connection, s_) if reuse else None,
                        own_addresses=[SUPPORT])


def outbox_rate(kind: str, n: int, sink: SmtpSink, reuse: bool, directory: Path,
                profile: bool) -> float:
    with database(kind, directory) as url:
        sender = queued_outbox(url, n, sink, reuse)
        before, start = len(sink.messages), time.perf_counter()
        with profiled(profile, f"outbox deliver_due, reuse={reuse}"):
            report = sender.deliver_due(limit=n)
        took = time.perf_counter() - start
    got = len(sink.messages) - before
    if len(report.sent) != n or got != n:
        raise SystemExit(f"sending: expected {n} sent, outbox says {len(report.sent)}, "
                         f"sink got {got}")
    return n / took


def smtp_rate(n: int, sink: SmtpSink, reuse: bool) -> float:
    """The SMTP part alone: the same message n times, no database."""
    raw = raw_mail(frm=SUPPORT, to="c@example.org", msgid="<bench@example.com>")
    start = time.perf_counter()
    if reuse:
        with connection(settings(sink)) as conn_send:
            for _ in range(n):
                conn_send(raw, SUPPORT, ["c@example.org"])
    else:
        for _ in range(n):
            send(settings(sink), raw, SUPPORT, ["c@example.org"])
    return n / (time.perf_counter() - start)


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser(__doc__.splitlines()[0], default=500, quick=50, backends="sqlite")
    parser.add_argument("--plain", action="store_true",
                        help="no STARTTLS and no AUTH (a local relay on port 25)")
    args = parse(parser, argv)
    with tempfile.TemporaryDirectory(prefix="maild-bench-send-") as tmp, \
            SmtpSink(starttls=not args.plain, require_auth=not args.plain) as sink:
        log_to_file(Path(tmp) / "maild.log")
        mode = "plain" if args.plain else "STARTTLS+AUTH"
        one, reused = smtp_rate(args.messages, sink, False), smtp_rate(args.messages, sink, True)
        print(f"sending ({mode}): SMTP alone, {args.messages} msgs: per-message connection "
              f"{one:,.0f} msg/s, one connection {reused:,.0f} msg/s, ratio {reused / one:.1f}x",
              flush=True)
        ok = []
        for kind in args.backends:
            base = outbox_rate(kind, args.messages, sink, False, Path(tmp), args.profile)
            conns = sink.connections
            fig = outbox_rate(kind, args.messages, sink, True, Path(tmp), args.profile)
            used = sink.connections - conns
            ratio = fig / base
            ok.append(ratio >= TARGET)
            print(f"sending {kind} ({mode}): outbox, {args.messages} msgs: per-message "
                  f"connection {base:,.0f} msg/s (baseline), reused connection {fig:,.0f} "
                  f"msg/s ({used} connection(s)), ratio {ratio:.1f}x, target >= {TARGET}x: "
                  f"{verdict(ratio >= TARGET)}", flush=True)
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main())
