"""SLA alert mail (`[sla] alert_to`): one mail per ticket and kind, a summary when
many turn at once, nothing without recipients, hostile subjects kept on one line.
The end-to-end path (check_sla at scheduler ticks -> alert -> SMTP sink) is in
tests/integration/test_kpi_replay.py."""

from __future__ import annotations

import email
from email.policy import default
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from maild.alerts import MAX_SINGLE, AlertSettings, queue_alerts
from maild.config import ConfigError, load_config
from maild.store.models import Customer, Mailbox, OutboxRow, Ticket
from tests.builders import migrated_sessions, utc

IST = ZoneInfo("Europe/Istanbul")
SETTINGS = AlertSettings(to=("lead@example.com", "ayse@example.com"),
                         sender="support@example.com", sender_name="Support", zone=IST)
NOW = utc(2026, 11, 9, 8)


def tickets(s: Session, n: int, subject: str = "Order late") -> list[int]:
    mb = Mailbox(address="support@example.com", created_at=NOW)
    ann = Customer(address="ann@example.org", name="Ann", created_at=NOW)
    s.add_all([mb, ann])
    s.flush()
    ids = []
    for i in range(n):
        t = Ticket(mailbox_id=mb.id, customer_id=ann.id, subject=subject,
                   normalized_subject=subject.lower()[:200], status="open", priority="normal",
                   tags=[], created_at=utc(2026, 11, 9, 6), updated_at=NOW, agent_replies=0,
                   sla_breached=False, suggestions=[], sla_due_at=utc(2026, 11, 9, 7, i % 60))
        s.add(t)
        s.flush()
        ids.append(t.id)
    return ids


def outbox(s: Session) -> list[tuple[str, str, email.message.EmailMessage]]:
    rows = s.execute(select(OutboxRow.kind, OutboxRow.recipient, OutboxRow.raw).order_by(
        OutboxRow.id)).all()
    return [(k, r, email.message_from_bytes(raw, policy=default)) for k, r, raw in rows]  # type: ignore[misc]


def test_one_mail_per_ticket_and_recipient(db_url: str) -> None:
    with migrated_sessions(db_url).begin() as s:
        ids = tickets(s, 2)
        assert queue_alerts(s, SETTINGS, "warning", ids, NOW) == 4
        mails = outbox(s)
    assert [(k, r) for k, r, _ in mails] == [
        ("sla_warning_alert", "lead@example.com"), ("sla_warning_alert", "ayse@example.com")] * 2
    msg = mails[0][2]
    assert msg["Subject"] == f"SLA at risk: ticket {ids[0]}, Order late (due Mon 09 Nov 10:00)"
    assert msg["Auto-Submitted"] == "auto-generated"
    body = msg.get_content()
    assert "Customer:  Ann <ann@example.org>" in body
    assert f"maild tickets show {ids[0]}" in body
    assert "[#" not in msg["Subject"]  # answering an alert must not touch the ticket


def test_many_at_once_is_one_summary(db_url: str) -> None:
    with migrated_sessions(db_url).begin() as s:
        ids = tickets(s, MAX_SINGLE + 5)
        assert queue_alerts(s, SETTINGS, "breach", ids, NOW) == 2
        [(kind, _, msg), _] = outbox(s)
    assert kind == "sla_breach_alert"
    assert msg["Subject"] == f"SLA breached: {MAX_SINGLE + 5} tickets"
    body = msg.get_content()
    assert body.startswith(f"{MAX_SINGLE + 5} tickets missed their first-response SLA at once")
    listed = [line for line in body.splitlines() if line.startswith(" ")]
    assert len(listed) == MAX_SINGLE and listed[0].split()[0] == str(ids[0])


def test_no_recipients_no_mail_and_hostile_subject(db_url: str) -> None:
    with migrated_sessions(db_url).begin() as s:
        ids = tickets(s, 1, subject="Help\r\nBcc: victim@example.net\u2028x")
        none = AlertSettings(to=(), sender="support@example.com", sender_name="S", zone=IST)
        assert queue_alerts(s, none, "breach", ids, NOW) == 0
        assert outbox(s) == []
        queue_alerts(s, SETTINGS, "breach", ids, NOW)
        msg = outbox(s)[0][2]
    assert "Bcc" not in msg and "\n" not in str(msg["Subject"])


def test_alert_to_must_be_addresses(tmp_path: Path) -> None:
    path = tmp_path / "maild.toml"
    path.write_text('[database]\nurl = "sqlite://"\n[mailbox]\naddress = "s@example.com"\n'
                    'imap_host = "localhost"\nusername = "s"\npassword_env = "X"\n'
                    '[sla]\nalert_to = ["lead example.com"]\n')
    with pytest.raises(ConfigError, match="sla.alert_to: not an email address"):
        load_config(path)
