"""Issue 2 acceptance: the golden corpus through a real Dovecot into tickets,
on SQLite and PostgreSQL; idempotent reruns; SIGKILL mid-batch loses nothing."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from devstack.dovecot import ImapAccount
from maild.parse import parse_message
from tests.corpus.loader import load_corpus
from tests.integration.stack import (
    append,
    env_for,
    maild_cmd,
    run_maild,
    show_json,
    tickets_json,
    write_config,
)

pytestmark = pytest.mark.integration


def seed_corpus(account: ImapAccount) -> dict[str, str]:
    """Append the corpus (INBOX and Sent, with INTERNALDATE); file -> Message-ID."""
    corpus = load_corpus("threading")
    for folder in ("INBOX", "Sent"):
        append(account, folder, [(m.raw, m.internaldate) for m in corpus.folder(folder)])
    return {m.file: parse_message(m.raw).message_id for m in corpus.messages}


def test_corpus_threads_into_expected_tickets(imap_account: ImapAccount, db_url: str,
                                              tmp_path: Path) -> None:
    ids = seed_corpus(imap_account)
    config = write_config(tmp_path, imap_account, db_url)
    run_maild(config, imap_account, "db", "upgrade")
    out = run_maild(config, imap_account, "run", "--once", "--json").stdout
    assert '"stored": 28' in out
    corpus = load_corpus("threading")
    got = tickets_json(config, imap_account)
    assert len(got) == len(corpus.tickets)
    for exp in corpus.tickets:
        t = show_json(config, imap_account, exp.number)
        assert (t["subject"], t["customer"]) == (exp.subject, exp.customer), exp.why
        assert sorted(m["message_id"] for m in t["messages"]) == sorted(
            ids[f] for f in exp.messages), f"ticket {exp.number}: {exp.why}"
        assert t["agent_replies"] == exp.agent_replies, exp.why
        if exp.first_agent_reply is None:
            assert t["first_response_at"] is None
        else:
            reply = corpus.message(exp.first_agent_reply)
            assert t["first_response_at"] is not None
            date = parse_message(reply.raw).date
            assert date is not None
            assert t["first_response_at"] == date.isoformat().replace("+00:00", "Z")
    broken = [t for t in got if t["subject"] == "Payment failed at checkout"]
    msgs = show_json(config, imap_account, broken[0]["id"])["messages"]
    assert msgs[0]["parse_error"] and "malformed MIME" in msgs[0]["parse_error"]
    att_ticket = corpus.ticket_of("17-attachments-pdf-png-path.eml").number
    att = show_json(config, imap_account, att_ticket)
    names = [a["filename"] for m in att["messages"] for a in m["attachments"]]
    assert all("/" not in n and ".." not in n for n in names) and names

    # A second run changes nothing.
    again = run_maild(config, imap_account, "run", "--once", "--json").stdout
    assert '"stored": 0' in again
    assert tickets_json(config, imap_account) == got


def _raw(i: int) -> bytes:
    return (f"From: Customer {i} <c{i}@example.org>\r\nTo: support@example.com\r\n"
            f"Subject: Question number {i}\r\nMessage-ID: <bulk-{i}@example.org>\r\n"
            f"Date: Mon, 02 Nov 2026 10:00:00 +0000\r\n\r\nHello, this is message {i}.\r\n"
            ).encode()


def _count(db_url: str, table: str) -> int:
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            return int(conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar() or 0)
    except sa.exc.SQLAlchemyError:
        return 0
    finally:
        engine.dispose()


def test_sigkill_mid_batch_loses_and_duplicates_nothing(imap_account: ImapAccount, db_url: str,
                                                        tmp_path: Path) -> None:
    total = 600
    append(imap_account, "INBOX", [(_raw(i), None) for i in range(total)])
    config = write_config(tmp_path, imap_account, db_url, batch_size=25)
    run_maild(config, imap_account, "db", "upgrade")
    proc = subprocess.Popen(maild_cmd(config, "run", "--once"), env=env_for(imap_account),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while _count(db_url, "messages") < 50 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = _count(db_url, "messages")
    assert 0 < partial < total, "kill should land mid-run"
    run_maild(config, imap_account, "run", "--once")
    assert _count(db_url, "messages") == total
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        dupes = conn.exec_driver_sql("SELECT count(*) FROM (SELECT message_id FROM messages "
                                     "GROUP BY message_id HAVING count(*) > 1) d").scalar()
        tickets = conn.exec_driver_sql("SELECT count(*) FROM tickets").scalar()
    engine.dispose()
    assert dupes == 0 and tickets == total
