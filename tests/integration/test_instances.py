"""Several instances on one PostgreSQL: each message processed once, each
auto-reply sent once, and a standby takes over when the holder is SIGKILLed."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa

from devstack.dovecot import ImapAccount
from devstack.smtpsink import SmtpSink
from maild.locks import mailbox_lock
from tests.integration.stack import (
    append,
    env_for,
    maild_cmd,
    run_maild,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.integration


def test_advisory_lock_is_exclusive_and_released(db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("advisory locks are PostgreSQL's; SQLite runs one instance")
    a, b = sa.create_engine(db_url), sa.create_engine(db_url)
    with mailbox_lock(a, "support@example.com") as first:
        with mailbox_lock(b, "support@example.com") as second:
            assert (first, second) == (True, False)
        with mailbox_lock(b, "other@example.com") as other:
            assert other is True
    with mailbox_lock(b, "support@example.com") as again:
        assert again is True
    a.dispose()
    b.dispose()


def _mails(account: ImapAccount, start: int, count: int) -> list[tuple[bytes, None]]:
    return [((f"From: Customer {i} <c{i}@example.org>\r\nTo: {account.address}\r\n"
              f"Subject: Question {i}\r\nMessage-ID: <inst-{i}@example.org>\r\n\r\n"
              f"Hello, question number {i}.\r\n").encode(), None)
            for i in range(start, start + count)]


def _daemon(config: Path, account: ImapAccount, log: Path | None = None
            ) -> subprocess.Popen[str]:
    out = log.open("w") if log else subprocess.DEVNULL
    return subprocess.Popen(maild_cmd(config, "run"), env=env_for(account),
                            stdout=out, stderr=subprocess.STDOUT, text=True)


def _wait_sent(sink: SmtpSink, count: int, timeout: float = 60) -> None:
    wait_until(lambda: len(sink.messages) >= count, timeout, f"{count} replies at the sink")


def _wait_marked_sent(db_url: str, count: int, timeout: float = 60) -> None:
    """Every reply marked sent: from then on nothing can send one again (only a row
    not marked sent is ever retried) — the positive signal that no duplicate follows."""
    def marked() -> bool:
        engine = sa.create_engine(db_url)
        try:
            with engine.connect() as conn:
                return conn.exec_driver_sql(
                    "SELECT count(*) FROM outbox WHERE status = 'sent'").scalar() == count
        finally:
            engine.dispose()
    wait_until(marked, timeout, f"{count} outbox rows marked sent")


def test_two_daemons_one_mailbox(imap_account: ImapAccount, db_url: str, smtp_sink: SmtpSink,
                                 tmp_path: Path) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("several instances need PostgreSQL")
    config = write_config(tmp_path, imap_account, db_url, smtp_sink,
                          extra="[outbox]\nretry_base_seconds = 1\n")
    config.write_text(config.read_text().replace("batch_size = 200",
                                                 "batch_size = 200\npoll_seconds = 1"))
    run_maild(config, imap_account, "db", "upgrade")
    first = _daemon(config, imap_account, tmp_path / "first.log")
    second = None
    try:
        append(imap_account, "INBOX", _mails(imap_account, 0, 1))
        _wait_sent(smtp_sink, 1)  # the first instance holds the mailbox now
        standby_log = tmp_path / "standby.log"
        second = _daemon(config, imap_account, standby_log)  # a standby beside it
        wait_until(lambda: "standing by" in standby_log.read_text(), 60,
                   "the second instance standing by")  # it is up before more mail comes
        append(imap_account, "INBOX", _mails(imap_account, 1, 19))
        _wait_sent(smtp_sink, 20)
        _wait_marked_sent(db_url, 20)  # both running: nothing is processed twice
        assert len(smtp_sink.messages) == 20
        first.send_signal(signal.SIGKILL)  # the holder dies: its lock goes with it
        first.wait()
        append(imap_account, "INBOX", _mails(imap_account, 20, 5))
        _wait_sent(smtp_sink, 25)  # only the standby can have done this
        _wait_marked_sent(db_url, 25)
        # Each said when it stood by and when it took over. Usually the second stands
        # by until the first dies; if the first lost the lock in a reconnect's backoff,
        # the roles swapped then, and the first stood by instead.
        address = imap_account.address
        logs = {"first": (tmp_path / "first.log").read_text(), "second": standby_log.read_text()}
        standing = f"{address}: standing by: another maild instance holds"
        taking = f"{address}: taking over: the instance that held"
        assert any(standing in text for text in logs.values()), logs
        for text in logs.values():
            if taking in text:
                assert text.index(standing) < text.index(taking), text
        if standing in logs["second"]:  # it stood by, and the holder died: it took over
            assert taking in logs["second"].split(standing, 1)[1], logs["second"]
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=15)
    finally:
        for p in (first, second):
            if p is not None and p.poll() is None:
                p.kill()
    ids = [m.parsed()["In-Reply-To"] for m in smtp_sink.messages]
    assert len(ids) == 25 and len(set(ids)) == 25  # every customer answered exactly once
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM messages WHERE direction='in'"
                                    ).scalar() == 25
        assert conn.exec_driver_sql("SELECT count(*) FROM quarantine").scalar() == 0
    engine.dispose()
