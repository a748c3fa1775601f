"""Customers' data rights on SQLite and PostgreSQL: export, forget (nothing of the
person left in any table or in a log line written afterwards), and retention."""

from __future__ import annotations

import io
import json
import logging
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, select, text

from maild.app import App, build_app
from maild.cli import main
from maild.clock import FixedClock
from maild.config import load_config
from maild.logs import setup_logging
from maild.privacy import purge_old_text
from maild.replying import set_status
from maild.report import compute_stats
from maild.schedule import job_digest, job_retention, job_sla
from maild.store.db import upgrade
from maild.store.models import (
    Customer,
    Event,
    MessageRow,
    MessageSource,
    OutboxRow,
    Quarantine,
    Ticket,
)
from tests.builders import raw_mail, utc
from tests.test_replying import deliver, ingest, write_config

ADDRESS = "zeynep.kaya@example.org"
NAME = "Zeynep Kaya"
SENTENCES = ["My invoice number 4471 is printed on the wrong company",
             "Please correct the billing address to Bağdat Caddesi 12",
             "I also never received the credit note for March"]
OTHER = "Ann Customer <ann@example.org>"


@pytest.fixture
def cfg_path(db_url: str, tmp_path: Path) -> Path:
    return write_config(tmp_path, db_url, "[privacy]\nkeep_message_text_days = 30\n"
                        '[sla]\nalert_to = ["lead@example.com"]\n'
                        '[digest]\nto = ["manager@example.com"]\n')


@pytest.fixture
def app(cfg_path: Path) -> App:
    built = build_app(load_config(cfg_path), FixedClock(utc(2026, 11, 2, 10)), environ={})
    upgrade(built.engine)
    return built


def _history(app: App) -> None:
    """Zeynep writes twice, an agent answers quoting her; Ann writes; a quarantined
    copy of Zeynep's mail; an ETA reply to Zeynep still queued."""
    ingest(app, raw_mail(frm=f"{NAME} <{ADDRESS}>", subject="Invoice 4471 wrong company",
                         msgid="<z1@mail.example.org>", body=f"{SENTENCES[0]}. {SENTENCES[1]}."),
           1)
    ingest(app, raw_mail(frm=OTHER, msgid="<a1@example.org>", body="Where is my parcel?"), 2)
    app.clock = FixedClock(utc(2026, 11, 2, 14, 30))  # first responses were due at 14:00
    assert sorted(job_sla(app)["breached"]) == [1, 2]  # alert mail names both customers
    ingest(app, raw_mail(frm="Ayse <support@example.com>", to=f"{NAME} <{ADDRESS}>",
                         date="Mon, 02 Nov 2026 14:45:00 +0000",
                         subject="Re: Invoice 4471 wrong company [#1]", msgid="<r1@example.com>",
                         in_reply_to="<z1@mail.example.org>",
                         body=f"Dear {NAME}, we fixed it.\n> {SENTENCES[0]}."), 1, role="sent")
    ingest(app, raw_mail(frm=f"{NAME} <{ADDRESS}>", subject="Re: Invoice 4471 wrong company [#1]",
                         msgid="<z2@mail.example.org>", in_reply_to="<r1@example.com>",
                         body=f"{SENTENCES[2]}."), 3)
    app.clock = FixedClock(utc(2026, 11, 3, 9))
    assert job_digest(app)["digest"] == "2026-11-02 queued"  # lists the breached tickets
    with app.sessions.begin() as s:
        s.add(Quarantine(mailbox_id=1, folder="INBOX", uidvalidity=1, uid=99,
                         error=f"ValueError: bad header from {ADDRESS}",
                         raw=raw_mail(frm=f"{NAME} <{ADDRESS}>", body=SENTENCES[1]),
                         at=app.clock.now()))


def _needles() -> list[str]:
    return [ADDRESS, NAME, *SENTENCES]


def _dump(app: App) -> list[tuple[str, str, str]]:
    """Every value of every column of every table, as text."""
    out: list[tuple[str, str, str]] = []
    with app.engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            for row in conn.execute(text(f'SELECT * FROM "{table}"')).mappings():
                for column, value in row.items():
                    if isinstance(value, bytes | memoryview):
                        value = bytes(value).decode("latin-1") + bytes(value).decode(
                            "utf-8", "replace")
                    elif not isinstance(value, str):
                        value = json.dumps(value, ensure_ascii=False, default=str)
                    out.append((table, column, value))
    return out


def _found(haystack: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    return [(t, c, n) for t, c, v in haystack for n in _needles() if n.lower() in v.lower()]


def _kpis(app: App) -> dict[str, Any]:
    with app.sessions() as s:
        stats = compute_stats(s, app.automation().calendar, utc(2026, 11, 1), utc(2026, 11, 4),
                              app.clock.now())
    return {k: stats[k] for k in ("tickets_created", "first_responses", "frt_wall_seconds",
                                  "otr_rate", "backlog")}


def test_export_has_every_message_raw_and_event(app: App, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    _history(app)
    out = tmp_path / "export.json"
    assert main(["--config", str(app.config.path), "customers", "export", ADDRESS.upper(),
                 "--out", str(out)]) == 0
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["customer"]["address"] == ADDRESS and data["customer"]["name"] == NAME
    [t] = data["tickets"]
    assert [m["direction"] for m in t["messages"]] == ["in", "out", "in"]
    assert SENTENCES[2] in t["messages"][2]["text"]
    assert "Message-ID: <z1@mail.example.org>" in t["messages"][0]["raw"]
    assert {"opened", "agent_reply", "auto_reply_queued"} <= {e["kind"] for e in t["events"]}
    assert [m["kind"] for m in data["mail_to_customer"]] == ["auto_reply"]
    assert SENTENCES[1] in data["quarantine"][0]["raw"]
    assert main(["--config", str(app.config.path), "customers", "export", ADDRESS]) == 0
    assert json.loads(capsys.readouterr().out)["tickets"][0]["id"] == 1
    assert main(["--config", str(app.config.path), "customers", "export", "x@nowhere.org"]) == 2
    assert "no customer with address" in capsys.readouterr().err


def test_forget_leaves_nothing_in_any_table_or_later_log_line(
        app: App, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    _history(app)
    assert _found(_dump(app)), "the test data must be there before"
    before = _kpis(app)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # not a terminal
    cfg = str(app.config.path)
    assert main(["--config", cfg, "customers", "forget", ADDRESS, "--json", "--yes"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["tickets"] == 1 and summary["messages"] == 3
    # the ETA reply to her, her SLA alert and the digest naming her: all still queued
    assert summary["outbox_cancelled"] == 3 and summary["quarantined"] == 1
    leftover = _found(_dump(app))
    assert leftover == [], leftover
    assert _kpis(app) == before  # the numbers stay
    # afterwards: the daemon's work and the CLI log nothing of her
    setup_logging("DEBUG")
    logging.getLogger("mailparser").setLevel(logging.INFO)  # header names, per message
    ingest(app, raw_mail(frm=OTHER, msgid="<a2@example.org>", subject="Re: Order missing [#2]",
                         body="Any news?"), 4)
    sent = deliver(app)  # Ann's ETA reply and alert go out; the mail naming Zeynep does not
    assert sent and any(b"To: Ann Customer <ann@example.org>" in raw for raw in sent)
    assert not [raw for raw in sent if ADDRESS.encode() in raw or raw == b""]
    job_sla(app)
    job_retention(app)
    for argv in (["tickets", "show", "1", "--json"], ["tickets", "list", "--json"],
                 ["stats", "--since", "2026-11-01", "--until", "2026-11-04", "--json"],
                 ["customers", "export", summary["pseudonym"]]):
        assert main(["--config", cfg, "--log-level", "DEBUG", *argv]) == 0
    logs = capsys.readouterr()
    written = logs.out + logs.err
    assert [n for n in _needles() if n.lower() in written.lower()] == []
    with app.sessions() as s:
        [audit] = s.scalars(select(Event).where(Event.kind == "customer_forgotten")).all()
        assert audit.ticket_id is None and audit.detail["pseudonym"] == summary["pseudonym"]
        assert s.scalar(select(OutboxRow.status).where(OutboxRow.kind == "auto_reply")
                        .order_by(OutboxRow.id).limit(1)) == "cancelled"
        assert s.scalar(select(Customer.erased_at).where(Customer.id == 1)) is not None
        t = s.get_one(Ticket, 1)
        assert t.agent_replies == 1 and t.first_response_at is not None
        assert s.scalar(select(MessageRow.text).where(MessageRow.from_addr == "ann@example.org")
                        .limit(1))  # Ann's mail is untouched
    assert main(["--config", cfg, "customers", "forget", summary["pseudonym"], "--yes"]) == 2


def test_forget_without_yes_refuses_off_terminal_and_asks_on_one(
        app: App, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    _history(app)
    cfg = str(app.config.path)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert main(["--config", cfg, "customers", "forget", ADDRESS]) == 1
    assert "give --yes" in capsys.readouterr().err
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda _prompt: "no")
    assert main(["--config", cfg, "customers", "forget", ADDRESS]) == 1
    shown = capsys.readouterr().out
    assert ADDRESS in shown and "#1" in shown and "administrator" in shown
    assert _found(_dump(app))  # nothing erased
    monkeypatch.setattr("builtins.input", lambda _prompt: "yes")
    assert main(["--config", cfg, "customers", "forget", ADDRESS]) == 0
    assert _found(_dump(app)) == []


def test_retention_purges_old_solved_text_and_keeps_metadata(app: App) -> None:
    _history(app)
    with app.sessions.begin() as s:
        set_status(s, s.get_one(Ticket, 1), "solved", now=app.clock.now(), actor="ayse")
    with app.sessions.begin() as s:
        assert purge_old_text(s, app.clock.now(), 30) == []  # solved just now
    app.clock = FixedClock(app.clock.now() + timedelta(days=31))
    assert job_retention(app) == {"text_purged": 1, "quarantine_purged": 0}
    with app.sessions() as s:
        texts = s.execute(select(MessageRow.ticket_id, MessageRow.text)).all()
        assert {t for t, body in texts if body} == {2}  # ticket 2 is not solved
        assert s.scalar(select(MessageSource.message_pk).join(
            MessageRow, MessageRow.id == MessageSource.message_pk).where(
            MessageRow.ticket_id == 1)) is None
        t = s.get_one(Ticket, 1)
        assert t.text_purged_at is not None and t.agent_replies == 1
        assert t.subject == "Invoice 4471 wrong company"
        assert [e.kind for e in s.scalars(select(Event).where(Event.kind == "text_purged"))] \
            == ["text_purged"]
    assert job_retention(app) == {"text_purged": 0, "quarantine_purged": 0}  # once
