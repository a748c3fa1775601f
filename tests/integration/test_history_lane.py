"""Issue 17: a big mailbox's first run. History is imported behind live mail: mail
that arrives while thousands of old messages are imported gets its ETA reply within
seconds, a live reply to an old conversation joins that conversation's ticket even
though history has not reached it, and every message is stored exactly once."""

from __future__ import annotations

import email.utils
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from bench.mailgen import MailGenerator, write_maildir
from devstack.dovecot import DovecotServer, ImapAccount
from devstack.smtpsink import SmtpSink
from maild.parse import parse_message
from tests.integration.stack import (
    Daemon,
    append,
    imap,
    run_maild,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.integration

AUTOREPLY = "global_per_hour = 100000\nper_sender_hours = 1\n"


def fill_history(dovecot: DovecotServer, account: ImapAccount, count: int,
                 days_ago: float = 3.0) -> list[bytes]:
    """`count` generated support mails that arrived 17..3 days ago, into INBOX."""
    client = imap(account)  # the first login creates the Maildir
    client.select_folder("INBOX")
    client.logout()
    end = datetime.now(UTC) - timedelta(days=days_ago)
    messages = list(MailGenerator(count, account.address, seed=17, end=end))
    write_maildir(dovecot.home_root / account.address.lower() / "Maildir", messages)
    client = imap(account)
    try:
        assert int(client.select_folder("INBOX")[b"EXISTS"]) == count  # indexed now
    finally:
        client.logout()
    return [raw for raw, _ in messages]


def live_mail(i: int, extra: str = "", subject: str | None = None,
              sender: str | None = None) -> bytes:
    frm = sender or f"live{i}@customers.example"
    return (f"From: Live Customer {i} <{frm}>\r\nTo: support@example.com\r\n"
            f"Subject: {subject or f'Live question {i}'}\r\n"
            f"Message-ID: <live-{i}@customers.example>\r\n"
            f"Date: {email.utils.formatdate()}\r\n{extra}\r\n"
            f"Hello, this is live mail number {i}.\r\n").encode()


def a_late_conversation(raws: list[bytes]) -> bytes:
    """A customer's first message among the last history messages (no references)."""
    for raw in reversed(raws[-200:]):
        p = parse_message(raw)
        if not p.references and not p.in_reply_to and "Auto-Submitted" not in raw.decode(
                errors="replace") and p.subject and "lottery" not in p.subject:
            return raw
    raise AssertionError("no first message near the end of the generated history")


def scalar(engine: sa.Engine, sql: str, **params: object) -> object:
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), params).scalar()


@pytest.mark.slow
def test_live_mail_answered_long_before_history_finishes(
        dovecot: DovecotServer, imap_account: ImapAccount, smtp_sink: SmtpSink, db_url: str,
        tmp_path: Path) -> None:
    count = 2500
    raws = fill_history(dovecot, imap_account, count)
    old = parse_message(a_late_conversation(raws))
    config = write_config(tmp_path, imap_account, db_url, smtp_sink,
                          extra="[history]\nworkers = 1\nchunk_seconds = 0.3\n")
    config.write_text(config.read_text().replace("[autoreply]\n", f"[autoreply]\n{AUTOREPLY}"))
    run_maild(config, imap_account, "db", "upgrade")
    engine = sa.create_engine(db_url)
    try:
        with Daemon(config, imap_account) as daemon:
            daemon.wait_for("imported behind live mail", timeout=60)
            sent_at: dict[str, float] = {}
            for i in range(5):
                sent_at[f"live{i}@customers.example"] = time.time()
                append(imap_account, "INBOX", [(live_mail(i), None)])
            reply = live_mail(99, sender=old.from_addr, subject=f"Re: {old.subject}",
                              extra=f"In-Reply-To: {old.message_id}\r\n"
                                    f"References: {old.message_id}\r\n")
            append(imap_account, "INBOX", [(reply, None)])
            got = smtp_sink.wait_for(5, timeout=60)
            answered = time.time()
            history_done = scalar(engine, "SELECT done FROM history_imports WHERE role = "
                                  "'inbox'")
            latency = {m.rcpt_tos[0]: m.received_at - sent_at[m.rcpt_tos[0]] for m in got}
            print(f"ETA reply latency during the import: {latency}; history at "
                  f"{history_done}/{count} when the 5th went out")
            assert sorted(latency) == sorted(sent_at)
            assert max(latency.values()) < 10, latency  # the bench measures the 2 s target
            assert isinstance(history_done, int) and history_done < count  # long before
            wait_until(lambda: scalar(engine, "SELECT count(*) FROM history_imports WHERE "
                                      "finished_at IS NULL") == 0, 300,
                       "the history import to finish", daemon.log)
            assert daemon.stop() == 0
        finished = datetime.now(UTC)
        assert finished.timestamp() - answered > 0
        # every message once; the live reply joined the old conversation's ticket
        # (plus the 5 ETA replies, whose copies in Sent are stored too)
        assert scalar(engine, "SELECT count(*) FROM messages WHERE direction = 'in'") == \
            count + 6
        assert scalar(engine, "SELECT count(*) FROM messages") == count + 6 + 5
        assert scalar(engine, "SELECT count(DISTINCT message_id) FROM messages") == \
            count + 6 + 5
        old_ticket = scalar(engine, "SELECT ticket_id FROM messages WHERE message_id = :m",
                            m=old.message_id)
        assert scalar(engine, "SELECT ticket_id FROM messages WHERE message_id = "
                      "'<live-99@customers.example>'") == old_ticket
        # ETA replies went to the live customers only: none to history, none twice
        rcpts = [m.rcpt_tos[0] for m in smtp_sink.messages]
        assert sorted(rcpts) == sorted(sent_at)
        assert scalar(engine, "SELECT count(*) FROM outbox WHERE kind = 'auto_reply'") == 5
        assert scalar(engine, "SELECT done FROM history_imports WHERE role = 'inbox'") == count
    finally:
        engine.dispose()


@pytest.mark.slow
def test_import_since_then_the_rest_on_demand(imap_account: ImapAccount, db_url: str,
                                              tmp_path: Path) -> None:
    now = datetime.now(UTC)
    old = [(live_mail(100 + i, sender=f"old{i}@customers.example"),
            now - timedelta(days=100, minutes=i)) for i in range(6)]
    recent = [(live_mail(200 + i, sender=f"recent{i}@customers.example"),
               now - timedelta(days=10, minutes=i)) for i in range(4)]
    append(imap_account, "INBOX", old + recent)
    config = write_config(tmp_path, imap_account, db_url)
    config.write_text(config.read_text().replace("batch_size = 200\n",
                                                 'batch_size = 200\nimport_since = "30d"\n'))
    run_maild(config, imap_account, "db", "upgrade")
    assert '"stored": 4' in run_maild(config, imap_account, "run", "--once", "--json").stdout
    check = run_maild(config, imap_account, "check", check=False).stdout
    assert "[  ok] history: history imported (4 messages)" in check, check

    bad = run_maild(config, imap_account, "import", "--since", "soon", check=False)
    assert bad.returncode == 2 and "--since: expected a period" in bad.stderr
    out = run_maild(config, imap_account, "import", "--all").stdout
    assert "INBOX: 10 message(s) of history queued" in out, out
    check = run_maild(config, imap_account, "check", check=False).stdout
    assert "[  ok] history: importing history: 0% (0 of 10 messages)" in check, check
    assert '"stored": 6' in run_maild(config, imap_account, "run", "--once", "--json").stdout
    engine = sa.create_engine(db_url)
    try:
        assert scalar(engine, "SELECT count(DISTINCT message_id) FROM messages") == 10
        assert scalar(engine, "SELECT count(*) FROM messages") == 10
        assert scalar(engine, "SELECT count(*) FROM outbox") == 0  # history: no reply
    finally:
        engine.dispose()


@pytest.mark.slow
def test_sigterm_during_history_import_then_resume(
        dovecot: DovecotServer, imap_account: ImapAccount, db_url: str,
        tmp_path: Path) -> None:
    """SIGTERM mid-import: the daemon (and its parse workers) exit promptly with 0; the
    next run goes on from the history checkpoint and stores each message once."""
    count = 1500
    fill_history(dovecot, imap_account, count)
    config = write_config(tmp_path, imap_account, db_url)
    run_maild(config, imap_account, "db", "upgrade")
    engine = sa.create_engine(db_url)
    try:
        with Daemon(config, imap_account) as daemon:
            daemon.wait_for("imported behind live mail", timeout=60)
            wait_until(lambda: (scalar(engine, "SELECT done FROM history_imports") or 0) > 0,
                       120, "a first history batch", daemon.log)
            assert daemon.stop(timeout=15) == 0
        done = scalar(engine, "SELECT done FROM history_imports")
        assert isinstance(done, int) and 0 < done < count
        assert scalar(engine, "SELECT count(*) FROM messages") == done
        out = run_maild(config, imap_account, "run", "--once", "--json").stdout
        assert f'"stored": {count - done}' in out, out
        assert scalar(engine, "SELECT count(DISTINCT message_id) FROM messages") == count
        assert scalar(engine, "SELECT count(*) FROM messages") == count
        assert scalar(engine, "SELECT done FROM history_imports") == count
    finally:
        engine.dispose()
