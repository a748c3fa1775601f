"""Issue 6 fault tests against a real Dovecot: the server goes away mid-IDLE
and mid-fetch. The promise: nothing lost, nothing sent twice, a clear log line.

Each test starts its own Dovecot (the session one is shared and must not be
stopped) and restarts it on the same ports.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from devstack.dovecot import DovecotServer, ImapAccount, make_workdir
from devstack.smtpsink import SmtpSink
from tests.integration.stack import (
    append,
    env_for,
    folder_messages,
    maild_cmd,
    run_maild,
    write_config,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def own_dovecot() -> Iterator[DovecotServer]:
    """A private Dovecot this test may stop and restart."""
    workdir = make_workdir("devstack-fault-")
    server = DovecotServer(workdir)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def wait_until(cond: Callable[[], bool], timeout: float, what: str,
               log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-4000:] if log and log.exists() else ""
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}\n{tail}")
        time.sleep(0.05)


def customer_mail(account: ImapAccount, i: int, prefix: str = "fault") -> bytes:
    return (f"From: Customer {i} <c{i}@example.org>\r\nTo: {account.address}\r\n"
            f"Subject: Question number {i}\r\nMessage-ID: <{prefix}-{i}@example.org>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            f"Hello, my order #{1000 + i} has not arrived yet. Can you help me?\r\n").encode()


def count(db_url: str, sql: str) -> int:
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            return int(conn.exec_driver_sql(sql).scalar() or 0)
    except sa.exc.SQLAlchemyError:
        return 0
    finally:
        engine.dispose()


def assert_each_once(db_url: str, total: int) -> None:
    """Every message is in exactly one row, each in its own ticket; none quarantined."""
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT count(*), count(DISTINCT message_id) FROM messages "
                                    "WHERE direction = 'in'").one()
        tickets = conn.exec_driver_sql("SELECT count(*) FROM tickets").scalar()
        quarantined = conn.exec_driver_sql("SELECT count(*) FROM quarantine").scalar()
    engine.dispose()
    assert tuple(rows) == (total, total), "a message is missing or stored twice"
    assert (tickets, quarantined) == (total, 0)


def test_dovecot_restart_mid_idle(own_dovecot: DovecotServer, db_url: str,
                                  tmp_path: Path) -> None:
    account = own_dovecot.create_account()
    log = tmp_path / "maild.log"
    with SmtpSink(deliver_to=own_dovecot) as sink:
        config = write_config(tmp_path, account, db_url, sink)
        run_maild(config, account, "db", "upgrade")
        with log.open("w") as out:
            proc = subprocess.Popen(maild_cmd(config, "run"), env=env_for(account),
                                    stdout=out, stderr=subprocess.STDOUT, text=True)
        try:
            append(account, "INBOX", [(customer_mail(account, 0), None)])
            wait_until(lambda: len(sink.messages) == 1, 30, "the first ETA reply", log)
            wait_until(lambda: len(folder_messages(account, "Sent")) == 1, 30,
                       "the reply's copy in Sent", log)
            # The daemon is now IDLE on INBOX. Take the server away under it.
            own_dovecot.stop()
            wait_until(lambda: "reconnecting in" in log.read_text(), 15,
                       "a reconnect line", log)
            wait_until(lambda: log.read_text().count("reconnecting in") >= 2, 15,
                       "a failed reconnect while Dovecot is down", log)
            assert proc.poll() is None, log.read_text()
            own_dovecot.start()
            append(account, "INBOX", [(customer_mail(account, 1), None)])
            wait_until(lambda: len(sink.messages) == 2, 40,
                       "the ETA reply after the restart", log)
            time.sleep(1)  # would a duplicate follow? (the outbox is sent at once)
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        text = log.read_text()
        replies = [m.parsed()["In-Reply-To"] for m in sink.messages]
    assert sorted(replies) == ["<fault-0@example.org>", "<fault-1@example.org>"], text
    assert_each_once(db_url, 2)
    lost = [line for line in text.splitlines() if "connection lost" in line]
    assert lost and f":{account.port}" in lost[0] and "reconnecting in" in lost[0], text
    assert "IMAP connection restored" in text, text
    assert len(folder_messages(account, "Sent")) == 2  # both replies copied, once each
    assert proc.returncode == 0, text
    assert "Traceback" not in text, text
