"""`maild quarantine list/show/retry/drop`: a message that failed to store is looked at,
retried through the normal ingest path after a fix, or dropped on record."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from maild.app import App, build_app
from maild.cli import main
from maild.clock import FixedClock
from maild.config import load_config
from maild.ingest import IngestItem
from maild.store.db import upgrade
from maild.store.models import Event, OutboxRow, Quarantine
from tests.builders import raw_mail
from tests.test_ticket_ops import write_config

# the CLI runs on the real clock, and the ETA reply's age guard judges by it
NOW = datetime.now(UTC).replace(microsecond=0)
ARRIVED = (NOW - timedelta(hours=1)).isoformat().replace("+00:00", "Z")


class Boom:
    """A handler with a bug: every message it sees fails (and is quarantined)."""

    name = "boom"

    def handle(self, *_: Any) -> None:
        raise RuntimeError("template exploded")


def quarantine(app: App, *raws: bytes) -> None:
    ingestor = app.ingestor(app.config.mailboxes[0])
    ingestor.handlers = (Boom(),)
    result = ingestor.ingest_batch("inbox", "INBOX", 7, [
        IngestItem(10 + i, raw, NOW - timedelta(hours=1)) for i, raw in enumerate(raws)])
    assert result.quarantined == len(raws)


@pytest.fixture
def setup(db_url: str, tmp_path: Path) -> tuple[Path, App]:
    config = write_config(tmp_path, db_url)
    app = build_app(load_config(config), FixedClock(NOW), environ={})
    upgrade(app.engine)
    quarantine(app, raw_mail(frm="Ann <ann@example.org>", subject="=?utf-8?q?Sipari=C5=9F?=",
                             msgid="<q1@example.org>"),
               raw_mail(frm="cem@example.org", subject="Invoice", msgid="<q2@example.org>"))
    return config, app


def cli(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any, str]:
    code = main(["--config", str(config), "--log-level", "ERROR", *args])
    out = capsys.readouterr()
    try:
        return code, json.loads(out.out), out.err
    except json.JSONDecodeError:
        return code, out.out, out.err


def test_list_and_show_a_held_message(setup: tuple[Path, App],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    config, _ = setup
    code, rows, _ = cli(config, capsys, "quarantine", "list", "--json")
    assert code == 0 and [r["id"] for r in rows] == [2, 1]  # newest first
    assert rows[1] | {"at": None, "size": None} == {
        "id": 1, "mailbox": "support@example.com", "folder": "INBOX", "uid": 10, "at": None,
        "status": "held", "retries": 0, "size": None, "from": "Ann <ann@example.org>",
        "subject": "Sipariş", "message_id": "<q1@example.org>",
        "error": "RuntimeError: template exploded", "ticket_id": None}
    code, shown, _ = cli(config, capsys, "quarantine", "show", "1", "--json")
    assert shown["role"] == "inbox" and shown["uidvalidity"] == 7
    assert shown["internaldate"] == ARRIVED
    code, text, _ = cli(config, capsys, "quarantine", "show", "1")
    assert "error        RuntimeError: template exploded" in text
    assert cli(config, capsys, "quarantine", "show", "9")[0] == 2


def test_show_raw_gives_back_the_exact_bytes(setup: tuple[Path, App],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    config, app = setup
    buffer = io.BytesIO()
    monkeypatch.setattr("sys.stdout", io.TextIOWrapper(buffer))
    assert main(["--config", str(config), "quarantine", "show", "2", "--raw"]) == 0
    with app.sessions() as s:
        assert buffer.getvalue() == s.get_one(Quarantine, 2).raw


def test_retry_stores_it_through_the_normal_path(setup: tuple[Path, App],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    config, app = setup
    code, result, err = cli(config, capsys, "quarantine", "retry", "1", "--agent", "Bob",
                            "--json")
    assert code == 0, err
    tid = result.pop("ticket_id")
    assert result == {"id": 1, "status": "retried", "duplicate": False, "new_ticket": True}
    code, ticket, _ = cli(config, capsys, "tickets", "show", str(tid), "--json")
    assert ticket["customer"] == "ann@example.org" and ticket["subject"] == "Sipariş"
    assert ticket["messages"][0]["arrived_at"] == ARRIVED  # its INTERNALDATE
    kinds = [e["kind"] for e in ticket["events"]]
    assert "quarantine_retried" in kinds and "rules" in kinds, ticket["events"]
    with app.sessions() as s:  # and the ETA auto-reply was queued, as for IMAP mail
        assert s.scalars(select(OutboxRow.kind).where(OutboxRow.ticket_id == tid)).all() == [
            "auto_reply"], ticket["events"]
    code, rows, _ = cli(config, capsys, "quarantine", "list", "--json")
    assert [r["id"] for r in rows] == [2]
    code, rows, _ = cli(config, capsys, "quarantine", "list", "--all", "--json")
    assert [(r["id"], r["status"], r["ticket_id"]) for r in rows] == [
        (2, "held", None), (1, "retried", tid)]
    code, _, err = cli(config, capsys, "quarantine", "retry", "1")
    assert code == 1 and "already retried" in err and f"ticket #{tid}" in err


def test_a_retry_that_fails_again_keeps_it_held(setup: tuple[Path, App],
                                                capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    config, app = setup

    def broken(*_: Any, **__: Any) -> None:
        raise ValueError("still broken")

    monkeypatch.setattr("maild.tickets.TicketWriter.add", broken)
    code, _, err = cli(config, capsys, "quarantine", "retry", "2")
    assert code == 1 and err.count("\n") == 1
    assert "retry failed, the message stays in quarantine: ValueError: still broken" in err
    with app.sessions() as s:
        row = s.get_one(Quarantine, 2)
        assert (row.resolved, row.retries, row.error) == (False, 1, "ValueError: still broken")
        assert s.scalars(select(Event.kind)).all() == []  # the failed retry left nothing
    monkeypatch.undo()
    code, result, _ = cli(config, capsys, "quarantine", "retry", "2", "--json")
    assert code == 0 and result["ticket_id"] is not None


def test_retry_of_a_message_already_stored_is_a_duplicate(
        setup: tuple[Path, App], capsys: pytest.CaptureFixture[str]) -> None:
    config, app = setup
    app.ingestor(app.config.mailboxes[0]).ingest_batch("inbox", "INBOX", 7, [IngestItem(
        50, raw_mail(frm="cem@example.org", subject="Invoice", msgid="<q2@example.org>"),
        NOW)])
    code, result, _ = cli(config, capsys, "quarantine", "retry", "2", "--json")
    assert code == 0 and result["duplicate"] and result["ticket_id"] is None


def test_drop_asks_or_needs_yes_and_stays_on_record(setup: tuple[Path, App],
                                                    capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    config, app = setup
    code, _, err = cli(config, capsys, "quarantine", "drop", "1")  # stdin is no terminal
    assert code == 2 and "pass --yes" in err
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda _prompt: "n")
    code, _, err = cli(config, capsys, "quarantine", "drop", "1")
    assert code == 1 and "not dropped" in err
    monkeypatch.setattr("builtins.input", lambda _prompt: "y")
    code, out, _ = cli(config, capsys, "quarantine", "drop", "1", "--agent", "Bob")
    assert code == 0 and "dropped" in out
    code, result, _ = cli(config, capsys, "quarantine", "drop", "2", "--yes", "--reason",
                          "spam", "--json")
    assert code == 0 and result["status"] == "dropped" and result["reason"] == "spam"
    with app.sessions() as s:
        dropped = s.scalars(select(Event).where(Event.kind == "quarantine_dropped").order_by(
            Event.id)).all()
        rows = s.scalars(select(Quarantine).order_by(Quarantine.id)).all()
        assert [(r.outcome, r.resolved_by, bool(r.raw)) for r in rows] == [
            ("dropped", "Bob", True), ("dropped", "cli", True)]  # the bytes stay
    assert [(e.ticket_id, e.actor, e.detail["quarantine_id"], e.detail["message_id"],
             e.detail["from"], e.detail["error"]) for e in dropped] == [
        (None, "Bob", 1, "<q1@example.org>", "Ann <ann@example.org>",
         "RuntimeError: template exploded"),
        (None, "cli", 2, "<q2@example.org>", "cem@example.org",
         "RuntimeError: template exploded")]
    assert cli(config, capsys, "quarantine", "list", "--json")[1] == []
    code, _, err = cli(config, capsys, "quarantine", "drop", "1", "--yes")
    assert code == 1 and "already dropped" in err
    # a dropped message can still be retried (a drop by mistake is not final)
    code, result, _ = cli(config, capsys, "quarantine", "retry", "1", "--json")
    assert code == 0 and result["ticket_id"] is not None
