"""Issue 5 acceptance: the digest goes out once at the configured local time,
caught up when maild starts later that day; the daemon's scheduler does the
same and stops within 10 s on SIGTERM. Never for a day before maild's first
run (issue 16)."""

from __future__ import annotations

import email
import signal
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from devstack.dovecot import ImapAccount
from devstack.smtpsink import SmtpSink
from tests.integration.stack import Daemon, append, run_maild, wait_until, write_config

pytestmark = pytest.mark.integration
IST = ZoneInfo("Europe/Istanbul")


def mail(frm: str, to: str, subject: str, msgid: str, date: str, extra: str = "") -> bytes:
    return (f"From: {frm}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: {msgid}\r\n"
            f"Date: {date}\r\n{extra}Content-Type: text/plain; charset=utf-8\r\n\r\n"
            "Hello, my order has not arrived. Could you check it please?\r\n").encode()


def seed(account: ImapAccount) -> None:
    day = datetime(2026, 11, 2, 10, 0, tzinfo=IST)  # Monday 10:00 local
    append(account, "INBOX", [(mail("Ann <ann@example.org>", account.address, "Order late",
                                    "<a1@example.org>", "Mon, 02 Nov 2026 10:00:00 +0300"),
                               day)])
    append(account, "Sent", [(mail(f"Alice (Support) <{account.address}>", "ann@example.org",
                                   "Re: Order late [#1]", "<r1@example.com>",
                                   "Mon, 02 Nov 2026 11:30:00 +0300",
                                   "In-Reply-To: <a1@example.org>\r\n"),
                              datetime(2026, 11, 2, 11, 30, tzinfo=IST))])


def digests(sink: SmtpSink) -> list[EmailMessage]:
    out = []
    for m in sink.messages:
        msg = email.message_from_bytes(m.raw, policy=default)
        if "manager@example.com" in m.rcpt_tos:
            out.append(msg)  # type: ignore[arg-type]
    return out


def test_digest_once_at_local_time_with_catch_up(imap_account: ImapAccount, db_url: str,
                                                 smtp_sink: SmtpSink, tmp_path: Path) -> None:
    seed(imap_account)
    config = write_config(tmp_path, imap_account, db_url, smtp_sink,
                          extra='[digest]\nto = ["manager@example.com"]\nat = "08:00"\n')
    run_maild(config, imap_account, "db", "upgrade")
    # maild's first run is on Monday evening: Monday is the first day with a digest
    first = run_maild(config, imap_account, "run", "--once", "--now", "2026-11-02T19:00:00Z")
    assert "no digest for 2026-11-01: maild first ran on 2026-11-02" in first.stderr
    run_maild(config, imap_account, "run", "--once", "--now", "2026-11-03T04:59:00Z")
    assert digests(smtp_sink) == []  # 07:59 local: not yet
    # maild was down at 08:00 and starts at 10:30 local: the digest is caught up once.
    run_maild(config, imap_account, "run", "--once", "--now", "2026-11-03T07:30:00Z")
    run_maild(config, imap_account, "run", "--once", "--now", "2026-11-03T09:00:00Z")
    [msg] = digests(smtp_sink)
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "2026-11-02" in msg["Subject"] or "2 Nov" in msg["Subject"]
    for part in (text, html):
        assert "1h 30m" in part  # the FRT of the day: 10:00 -> 11:30, in business time
    assert "http" not in html.lower().replace("http-equiv", "")
    # Next day, again once.
    run_maild(config, imap_account, "run", "--once", "--now", "2026-11-04T06:00:00Z")
    run_maild(config, imap_account, "run", "--once", "--now", "2026-11-04T06:05:00Z")
    assert len(digests(smtp_sink)) == 2


def test_daemon_scheduler_catches_up_and_stops_on_sigterm(
        imap_account: ImapAccount, db_url: str, smtp_sink: SmtpSink, tmp_path: Path) -> None:
    seed(imap_account)
    config = write_config(tmp_path, imap_account, db_url, smtp_sink,
                          extra='[digest]\nto = ["manager@example.com"]\nat = "00:00"\n')
    run_maild(config, imap_account, "db", "upgrade")
    # installed yesterday (no digest for the day before that), so yesterday's is due now
    yesterday = datetime.now(UTC) - timedelta(days=1)
    run_maild(config, imap_account, "run", "--once", "--now", yesterday.isoformat())
    assert digests(smtp_sink) == []
    for attempt in range(2):
        daemon = Daemon(config, imap_account)
        daemon.wait_for("maild running")
        if attempt == 0:
            wait_until(lambda: len(digests(smtp_sink)) == 1, 30, "the caught-up digest",
                       daemon.log)
        else:  # the restart's catch-up job has run and found it sent: it will not send it
            daemon.wait_for("already sent, not sent again")
        started = time.monotonic()
        code = daemon.stop(signal.SIGTERM)
        assert time.monotonic() - started < 10, daemon.output
        assert code == 0, daemon.output
        assert "maild stopped" in daemon.output
    assert len(digests(smtp_sink)) == 1  # the restart did not send it again


def test_daemon_sends_mail_queued_before_a_crash_at_start(
        imap_account: ImapAccount, db_url: str, smtp_sink: SmtpSink, tmp_path: Path) -> None:
    """An ETA reply queued but not sent (maild died, or had no SMTP yet) goes out as
    soon as the daemon starts, with no new mail arriving to wake it up."""
    seed(imap_account)
    no_smtp = write_config(tmp_path, imap_account, db_url)
    run_maild(no_smtp, imap_account, "db", "upgrade")
    run_maild(no_smtp, imap_account, "run", "--once", "--now", "2026-11-02T07:05:00Z")  # queued
    assert smtp_sink.messages == []
    config = write_config(tmp_path, imap_account, db_url, smtp_sink)
    daemon = Daemon(config, imap_account)
    try:
        daemon.wait_for("maild running")
        started = time.monotonic()
        [reply] = smtp_sink.wait_for(1, timeout=20)
        assert time.monotonic() - started < 15, daemon.output  # not the minute-later tick
        assert list(reply.rcpt_tos) == ["ann@example.org"]
    finally:
        assert daemon.stop() == 0, daemon.output
