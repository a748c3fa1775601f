"""/healthz and /metrics scraped from a running `maild run` (issue 16, deliverable 3).

A real Dovecot and the SMTP sink; the daemon is the real CLI in a child process
with `[http] listen` on a free port. Healthy: 200 and the figures of what it did
(mail ingested, the ETA reply queued and sent, the ticket counted). Unhealthy: a
refused password (three refused logins in a row), and a Dovecot that went away
(the mailbox not polled within its interval): 503 with the reason as JSON.
"""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from devstack.dovecot import DovecotServer, ImapAccount, free_ports, make_workdir
from devstack.smtpsink import SmtpSink
from tests.integration.stack import Daemon, append, run_maild, wait_until, write_config

pytestmark = pytest.mark.integration


def http_config(tmp_path: Path, account: ImapAccount, sink: SmtpSink | None, port: int,
                http_extra: str = "") -> Path:
    config = write_config(tmp_path, account, f"sqlite:///{tmp_path / 'maild.db'}", sink,
                          extra=f'[http]\nlisten = "127.0.0.1:{port}"\n{http_extra}')
    text = config.read_text().replace("batch_size = 200", "batch_size = 200\npoll_seconds = 1\n"
                                      "idle = false")
    config.write_text(text)
    return config


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def samples(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, text = get(port, "/metrics")
    assert status == 200, text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(port: int, name: str, **labels: str) -> float | None:
    return samples(port).get((name, tuple(sorted(labels.items()))))


def healthz(port: int) -> tuple[int, dict[str, Any]]:
    status, text = get(port, "/healthz")
    return status, json.loads(text)


def customer_mail(account: ImapAccount) -> bytes:
    return (f"From: Ayla Demir <ayla@example.org>\r\nTo: {account.address}\r\n"
            "Subject: My order has not arrived\r\nMessage-ID: <health-1@example.org>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            "Hello, order #4711 has not arrived yet. Can you help me?\r\n").encode()


def test_a_running_daemon_is_healthy_and_counts_what_it_did(
        imap_account: ImapAccount, smtp_sink: SmtpSink, tmp_path: Path) -> None:
    (port,) = free_ports(1)
    config = http_config(tmp_path, imap_account, smtp_sink, port)
    run_maild(config, imap_account, "db", "upgrade")
    append(imap_account, "INBOX", [(customer_mail(imap_account), None)])
    with Daemon(config, imap_account) as daemon:
        daemon.wait_for(f"serving /healthz and /metrics on http://127.0.0.1:{port}")
        mailbox = imap_account.address
        wait_until(lambda: value(port, "maild_outbox_sent_total", kind="auto_reply") == 1, 30,
                   "the ETA reply counted as sent", daemon.log)
        status, body = healthz(port)
        assert status == 200, body
        assert body["status"] == "ok" and body["reasons"] == []
        names = {c["name"] for c in body["checks"]}
        assert names == {f"mailbox {mailbox}", "database", "outbox", "history"}
        got = samples(port)
        assert got[("maild_messages_ingested_total",
                    (("folder", "inbox"), ("mailbox", mailbox)))] == 1
        assert got[("maild_auto_replies_total", (("outcome", "queued"), ("reason", "")))] == 1
        assert got[("maild_tickets", (("status", "new"),))] == 1
        assert got[("maild_tickets", (("status", "solved"),))] == 0
        assert got[("maild_outbox_messages", (("status", "queued"),))] == 0
        assert got[("maild_outbox_oldest_queued_age_seconds", ())] == 0
        assert got[("maild_quarantine_messages", ())] == 0
        assert got[("maild_database_up", ())] == 1
        assert got[("maild_sla_breached_tickets", ())] == 0
        assert ("maild_sla_at_risk_tickets", ()) in got
        assert got[("maild_ingest_batch_duration_seconds_count", (("mailbox", mailbox),))] >= 1
        assert got[("maild_mailbox_last_poll_age_seconds", (("mailbox", mailbox),))] < 30
        assert get(port, "/nothing")[0] == 404
        assert daemon.stop() == 0
    assert smtp_sink.messages, "the ETA reply never reached the sink"


def test_a_refused_password_makes_the_mailbox_unhealthy(
        imap_account: ImapAccount, tmp_path: Path) -> None:
    (port,) = free_ports(1)
    config = http_config(tmp_path, imap_account, None, port)
    run_maild(config, imap_account, "db", "upgrade")
    wrong = ImapAccount(**{**imap_account.__dict__, "password": "not-the-password"})
    with Daemon(config, wrong) as daemon:
        daemon.wait_for("serving /healthz")
        wait_until(lambda: healthz(port)[0] == 503, 40, "/healthz answering 503", daemon.log)
        status, body = healthz(port)
        assert body["status"] == "unhealthy"
        (reason,) = body["reasons"]
        assert reason.startswith(f"mailbox {imap_account.address}: login refused ")
        assert "times in a row" in reason
        assert "fix: check the login name and the password" in daemon.output
        assert "reported unhealthy" in daemon.output
        assert value(port, "maild_mailbox_failures", mailbox=imap_account.address) >= 3
        assert daemon.running()  # it keeps retrying
        assert daemon.stop() == 0


@pytest.fixture
def own_dovecot() -> Iterator[DovecotServer]:
    """A private Dovecot this test may stop."""
    workdir = make_workdir("devstack-health-")
    server = DovecotServer(workdir)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def test_a_mailbox_not_polled_in_time_is_unhealthy_and_recovers(
        own_dovecot: DovecotServer, tmp_path: Path) -> None:
    account = own_dovecot.create_account()
    (port,) = free_ports(1)
    config = http_config(tmp_path, account, None, port, "poll_grace_seconds = 2\n")
    run_maild(config, account, "db", "upgrade")
    with Daemon(config, account) as daemon:
        daemon.wait_for("serving /healthz")
        wait_until(lambda: "polled " in healthz(port)[1]["checks"][0]["detail"], 30,
                   "a first completed poll", daemon.log)
        own_dovecot.stop()
        wait_until(lambda: healthz(port)[0] == 503, 40, "/healthz 503", daemon.log)
        body = healthz(port)[1]
        (reason,) = body["reasons"]
        assert reason.startswith(f"mailbox {account.address}: last polled ")
        assert "last error: IMAP localhost" in reason and "cannot connect" in reason
        own_dovecot.start()
        wait_until(lambda: healthz(port)[0] == 200, 60, "/healthz 200 again", daemon.log)
        assert daemon.stop() == 0
