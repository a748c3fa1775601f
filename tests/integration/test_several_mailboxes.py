"""Two shared mailboxes on the real Dovecot (issue 15, "Several mailboxes").

support@ sends through [smtp] (sink A); sales@ has its own [mailbox.smtp] (sink B).
Each mailbox's ETA reply and macro reply must go out through its own SMTP, with
its own address as From, and be copied to its own Sent folder; SLA alerts come
from the ticket's mailbox; the digest has a section per mailbox.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from devstack.dovecot import DovecotServer, ImapAccount
from devstack.smtpsink import SmtpSink
from tests.integration.stack import (
    PASSWORD_ENV,
    REPO,
    append,
    folder_messages,
    maild_cmd,
    write_config,
)
from tests.integration.test_autoreply import customer_mail

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SALES_ENV = "MAILD_TEST_SALES_PASSWORD"
ARRIVED = datetime(2026, 11, 2, 7, 0, tzinfo=UTC)  # Monday 10:00 in Istanbul


def two_mailbox_config(tmp: Path, support: ImapAccount, sales: ImapAccount, db_url: str,
                       sink_a: SmtpSink, sink_b: SmtpSink) -> Path:
    sales_table = f"""
[[mailbox]]
address = "{sales.address}"
imap_host = "localhost"
imap_port = {sales.port}
security = "starttls"
ca_file = "{sales.ca_file}"
username = "{sales.address}"
password_env = "{SALES_ENV}"
[mailbox.smtp]
host = "127.0.0.1"
port = {sink_b.port}
security = "none"
allow_insecure = true
"""
    path = write_config(tmp, support, db_url, sink_a)
    text = path.read_text().replace("\n[mailbox]\n", "\n[[mailbox]]\n", 1)
    text = text.replace("[sla]\n", '[sla]\nalert_to = ["lead@example.com"]\n', 1)
    path.write_text(text + '\n[digest]\nto = ["manager@example.com"]\nat = "08:00"\n'
                    + sales_table)
    return path


def recipients(raws: list[bytes]) -> list[str]:
    """The To address of each message (a folder's content)."""
    return [email.message_from_bytes(raw, policy=email.policy.default)["To"]
            .addresses[0].addr_spec for raw in raws]


def run(config: Path, support: ImapAccount, sales: ImapAccount, *args: str) -> str:
    env = {**os.environ, PASSWORD_ENV: support.password, SALES_ENV: sales.password}
    proc = subprocess.run(maild_cmd(config, *args), env=env, capture_output=True, text=True,
                          timeout=300, cwd=REPO)
    assert proc.returncode == 0, f"maild {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def from_to(sink: SmtpSink) -> list[tuple[str, str, str]]:
    """(envelope sender, From, To) of the mail to customers (not the digest or alerts)."""
    out = [(m.mail_from, m.parsed()["From"].addresses[0].addr_spec,
            m.parsed()["To"].addresses[0].addr_spec) for m in sink.messages]
    return [o for o in out if o[2].endswith("@example.org")]


def test_each_mailbox_sends_through_its_own_smtp_and_sent(
        dovecot: DovecotServer, db_url: str, tmp_path: Path) -> None:
    support = dovecot.create_account(prefix="support")
    sales = dovecot.create_account(prefix="sales")
    with SmtpSink(deliver_to=dovecot) as sink_a, SmtpSink(deliver_to=dovecot) as sink_b:
        config = two_mailbox_config(tmp_path, support, sales, db_url, sink_a, sink_b)
        run(config, support, sales, "db", "upgrade")
        append(support, "INBOX", [(customer_mail("Ann <ann@example.org>", support.address,
                                                 "Order missing", "<ann1@example.org>"),
                                   ARRIVED)])
        append(sales, "INBOX", [(customer_mail("Bob <bob@example.org>", sales.address,
                                               "Price for 40 units", "<bob1@example.org>"),
                                 ARRIVED)])
        run(config, support, sales, "run", "--once", "--now", "2026-11-02T07:05:00Z")
        assert from_to(sink_a) == [(support.address, support.address, "ann@example.org")]
        assert from_to(sink_b) == [(sales.address, sales.address, "bob@example.org")]
        # both first responses are late at 15:00 local: each ticket's breach alert
        # comes from its own mailbox, through its own SMTP
        run(config, support, sales, "run", "--once", "--now", "2026-11-02T12:00:00Z")
        for sink, mailbox in ((sink_a, support.address), (sink_b, sales.address)):
            alerts = [m for m in sink.messages if m.rcpt_tos == ("lead@example.com",)]
            assert len(alerts) == 1 and alerts[0].mail_from == mailbox
            assert alerts[0].parsed()["From"].addresses[0].addr_spec == mailbox
        # a macro reply on the sales ticket, sent through maild (on the real clock)
        tickets = json.loads(run(config, support, sales, "tickets", "list", "--json"))
        bob = next(t["id"] for t in tickets if t["customer"] == "bob@example.org")
        run(config, support, sales, "reply", str(bob), "--macro", "greeting", "--send")
        run(config, support, sales, "run", "--once")
        assert len(from_to(sink_a)) == 1  # nothing of sales@ went through [smtp]
        assert [f for _, f, _ in from_to(sink_b)] == [sales.address] * 2
    sent_support = folder_messages(support, "Sent")
    sent_sales = folder_messages(sales, "Sent")
    mine = [to for to in recipients(sent_support) if to != "manager@example.com"]  # digests
    assert sorted(mine) == ["ann@example.org", "lead@example.com"]
    assert sorted(recipients(sent_sales)) == ["bob@example.org", "bob@example.org",
                                              "lead@example.com"]
    digest = run(config, support, sales, "digest", "--date", "2026-11-02", "--preview",
                 "--now", "2026-11-03T06:00:00Z")
    assert f"MAILBOX {support.address}" in digest and f"MAILBOX {sales.address}" in digest
    support_part, sales_part = digest.split(f"MAILBOX {support.address}")[1].split(
        f"MAILBOX {sales.address}")
    # each its own: one new ticket, breached on the day (the reply came on another day)
    for part, subject in ((support_part, "Order missing"), (sales_part, "Price for 40 units")):
        assert "1 new, 0 first responses" in part and "1 breaches, backlog 1" in part
        assert "breaches: #" in part and subject in part.split("at risk now")[0]
