"""Issue 6 fault tests against a real Dovecot: the server goes away mid-IDLE
and mid-fetch. The promise: nothing lost, nothing sent twice, a clear log line.

Each test starts its own Dovecot (the session one is shared and must not be
stopped) and restarts it on the same ports.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from devstack.dovecot import DovecotServer, ImapAccount, make_workdir
from devstack.smtpsink import SmtpSink
from tests.integration.stack import (
    Daemon,
    append,
    assert_each_once,
    folder_messages,
    imap,
    run_maild,
    wait_until,
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


def test_dovecot_restart_mid_idle(own_dovecot: DovecotServer, db_url: str,
                                  tmp_path: Path) -> None:
    account = own_dovecot.create_account()
    with SmtpSink(deliver_to=own_dovecot) as sink:
        config = write_config(tmp_path, account, db_url, sink)
        run_maild(config, account, "db", "upgrade")
        with Daemon(config, account) as daemon:
            log = daemon.log
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
            assert daemon.running(), daemon.output
            own_dovecot.start()
            append(account, "INBOX", [(customer_mail(account, 1), None)])
            wait_until(lambda: len(sink.messages) == 2, 40,
                       "the ETA reply after the restart", log)
            # No duplicate can follow once every reply is marked sent (only a row not
            # marked sent is ever sent again) and both copies are in Sent.
            wait_until(lambda: count(db_url, "SELECT count(*) FROM outbox WHERE status = "
                                     "'sent'") == 2, 30, "both replies marked sent", log)
            wait_until(lambda: len(folder_messages(account, "Sent")) == 2, 30,
                       "the second reply's copy in Sent", log)
            code = daemon.stop(signal.SIGTERM)
        text = daemon.output
        replies = [m.parsed()["In-Reply-To"] for m in sink.messages]
    assert sorted(replies) == ["<fault-0@example.org>", "<fault-1@example.org>"], text
    assert_each_once(db_url, 2)
    lost = [line for line in text.splitlines() if "connection lost" in line]
    assert lost and f":{account.port}" in lost[0] and "reconnecting in" in lost[0], text
    assert "IMAP connection restored" in text, text
    assert len(folder_messages(account, "Sent")) == 2  # both replies copied, once each
    assert code == 0, text
    assert "Traceback" not in text, text


@contextmanager
def frozen(pid: int) -> Iterator[None]:
    """Hold maild (SIGSTOP) while the server goes away, then let it go on (SIGCONT): a
    fast machine would otherwise finish the backlog before Dovecot is down."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def multiappend(account: ImapAccount, raws: list[bytes]) -> None:
    client = imap(account)
    try:
        for i in range(0, len(raws), 250):
            client.multiappend("INBOX", raws[i:i + 250])
    finally:
        client.logout()


@pytest.mark.parametrize("how", ["kill", "stop"])
def test_dovecot_gone_mid_fetch(own_dovecot: DovecotServer, db_url: str, tmp_path: Path,
                                how: str) -> None:
    """`run --once` loses the server between batches: it fails with one clear error
    line and exit 1; after a restart the next run stores exactly the rest."""
    total, batch = 600, 40
    account = own_dovecot.create_account()
    multiappend(account, [customer_mail(account, i, "fetch") for i in range(total)])
    config = write_config(tmp_path, account, db_url, batch_size=batch)
    run_maild(config, account, "db", "upgrade")
    with Daemon(config, account, "--once") as once:
        wait_until(lambda: count(db_url, "SELECT count(*) FROM messages") >= 2 * batch, 40,
                   "the first batches", once.log)
        with frozen(once.proc.pid):  # the server goes while maild is mid-run, however fast
            own_dovecot.kill() if how == "kill" else own_dovecot.stop()
        code = once.wait(timeout=30)
    text = once.output
    partial = count(db_url, "SELECT count(*) FROM messages")
    assert code == 1 and 0 < partial < total, text
    error = [line for line in text.splitlines() if line.startswith("maild: error:")]
    assert len(error) == 1 and f"IMAP localhost:{account.port}" in error[0], text
    assert "connection lost" in error[0] or "cannot connect" in error[0], text
    interrupted = [line for line in text.splitlines() if "INBOX: interrupted after" in line]
    assert len(interrupted) == 1 and "the next cycle resumes there" in interrupted[0], text
    assert "Traceback" not in text, text
    # Whole batches only: the checkpoint covers exactly what was committed.
    assert partial % batch == 0
    assert count(db_url, "SELECT last_uid FROM folder_states WHERE role = 'inbox'") == partial

    own_dovecot.start()
    again = run_maild(config, account, "run", "--once", "--json")
    assert f'"stored": {total - partial}' in again.stdout, again.stdout + again.stderr
    assert_each_once(db_url, total)


def test_daemon_keeps_retrying_when_dovecot_dies_mid_fetch(own_dovecot: DovecotServer,
                                                          db_url: str, tmp_path: Path) -> None:
    """The daemon loses Dovecot in the middle of a backlog: it logs where it stopped,
    keeps retrying while the server is down, and finishes the backlog once it is back."""
    total, batch = 300, 30
    account = own_dovecot.create_account()
    multiappend(account, [customer_mail(account, i, "daemon") for i in range(total)])
    config = write_config(tmp_path, account, db_url, batch_size=batch)
    run_maild(config, account, "db", "upgrade")
    stored = "SELECT count(*) FROM messages"
    with Daemon(config, account) as daemon:
        log = daemon.log
        wait_until(lambda: count(db_url, stored) >= 2 * batch, 40, "the first batches", log)
        with frozen(daemon.proc.pid):
            own_dovecot.kill()
        wait_until(lambda: "INBOX: interrupted after" in log.read_text(), 15,
                   "the interrupted-fetch line", log)
        wait_until(lambda: "cannot connect: Connection refused" in log.read_text(), 15,
                   "a refused reconnect", log)
        assert daemon.running() and count(db_url, stored) < total, daemon.output
        own_dovecot.start()
        wait_until(lambda: count(db_url, stored) == total, 60, "the rest of the backlog", log)
        code = daemon.stop(signal.SIGTERM)
    text = daemon.output
    assert code == 0 and "Traceback" not in text, text
    assert "IMAP connection restored" in text, text
    assert_each_once(db_url, total)
