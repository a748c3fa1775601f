"""Health checks and metrics without servers: the verdict per mailbox state, the
suppression-reason labels, and counters that count only committed work."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from maild.app import build_app
from maild.clock import SystemClock
from maild.config import ConfigError, parse_config
from maild.health import Check, check_database, check_outbox, health, mailbox_check
from maild.metrics import Metrics, note, reason_label
from maild.pollstate import MailboxSnapshot, MailboxState, PollStates
from maild.store.db import upgrade


def snap(**kw: object) -> MailboxSnapshot:
    base: dict[str, object] = dict(address="s@example.com", interval=60.0, started=1000.0,
                                   last_ok=None, failures=0, auth_failures=0, last_error=None,
                                   standby=False)
    return MailboxSnapshot(**{**base, **kw})  # type: ignore[arg-type]


def test_mailbox_verdicts() -> None:
    assert mailbox_check(snap(), 1100.0, 60).ok  # first poll in progress, within 180 s
    stale = mailbox_check(snap(last_error="cannot connect"), 1181.0, 60)
    assert not stale.ok and stale.detail == ("not polled in 181 s (limit 180 s); last error: "
                                             "cannot connect")
    assert mailbox_check(snap(last_ok=2000.0), 2100.0, 60).detail == "polled 100 s ago"
    late = mailbox_check(snap(last_ok=2000.0), 2200.0, 0)
    assert not late.ok and late.detail.startswith("last polled 200 s ago (limit 120 s)")
    refused = mailbox_check(snap(last_ok=2000.0, auth_failures=3, last_error="login failed"),
                            2001.0, 60)
    assert not refused.ok and refused.detail == "login refused 3 times in a row: login failed"
    assert mailbox_check(snap(auth_failures=2, last_ok=2000.0), 2001.0, 60).ok
    assert mailbox_check(snap(standby=True), 99999.0, 0).ok


def test_state_counts_refused_logins_in_a_row_only() -> None:
    state = MailboxState("s@example.com", 60)
    assert state.failed("refused", auth=True) == 1
    assert state.failed("refused", auth=True) == 2
    assert state.failed("network down") == 0  # not a login: the run of refusals ends
    state.failed("refused", auth=True)
    state.succeeded()
    s = state.snapshot()
    assert (s.failures, s.auth_failures, s.last_error) == (0, 0, None) and s.last_ok
    assert state.standing_by(True) and not state.standing_by(True)
    assert state.standing_by(False)


@pytest.mark.parametrize(("reason", "label"), [
    ("loop-guard:bounce", "loop-guard:bounce"),
    ("loop-guard:own-address", "loop-guard:own-address"),
    ("rule:spam-subjects (spam)", "rule"),
    ("rate-limit-sender (one per 24 h)", "rate-limit-sender"),
    ("rate-limit-global (200 per hour)", "rate-limit-global"),
    ("recipient-bounced (our mail to it bounced at 2026-01-01; x)", "recipient-bounced"),
    ("too old: arrived 30 h ago (autoreply.max_age_hours = 24)", "too-old"),
    ("disabled in config (autoreply.enabled = false)", "disabled"),
    ("reply to an existing ticket", "existing-ticket"),
    ("no address to reply to", "no-address"),
    ("???", "other"),
])
def test_reason_labels_are_short_and_bounded(reason: str, label: str) -> None:
    assert reason_label(reason) == label


def test_counters_count_committed_work_only() -> None:
    engine = create_engine("sqlite://")
    sessions = sessionmaker(engine)
    metrics = Metrics()
    metrics.attach(sessions, engine, SystemClock(), PollStates())
    with sessions.begin() as session:
        note(session, "auto_replies", "queued", "")
        note(session, "auto_replies", "suppressed", "too-old")
    with pytest.raises(RuntimeError), sessions.begin() as session:
        note(session, "auto_replies", "queued", "")
        raise RuntimeError("the batch failed")
    reg = metrics.registry
    assert reg.get_sample_value("maild_auto_replies_total",
                                {"outcome": "queued", "reason": ""}) == 1
    assert reg.get_sample_value("maild_auto_replies_total",
                                {"outcome": "suppressed", "reason": "too-old"}) == 1
    # the database gauges: no schema here, so the scrape says the database is not up
    assert reg.get_sample_value("maild_database_up") == 0


def minimal_config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "maild.toml"
    path.write_text(f'[database]\nurl = "sqlite:///{tmp_path}/m.db"\n[mailbox]\n'
                    'address = "s@example.com"\nimap_host = "localhost"\n'
                    f'username = "s@example.com"\n{extra}')
    return path


def test_health_of_an_idle_instance_and_a_failing_check(tmp_path: Path) -> None:
    from maild.config import load_config

    app = build_app(load_config(minimal_config(tmp_path)))
    upgrade(app.engine)
    ok, body = health(app)
    assert ok and body["status"] == "ok"
    assert [c["name"] for c in body["checks"]] == ["database", "outbox", "history"]

    def importing(_app: object) -> Iterable[Check]:
        yield Check("history import", False, "importing history: 42%")
    ok, body = health(app, [check_database, check_outbox, importing])
    assert not ok and body["reasons"] == ["history import: importing history: 42%"]
    assert app.metrics.registry.get_sample_value("maild_tickets", {"status": "new"}) == 0
    assert app.metrics.registry.get_sample_value("maild_database_up") == 1


def test_a_history_import_shows_its_progress_and_stays_healthy(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from maild.config import load_config
    from maild.store import repo
    from maild.store.models import HistoryImport

    app = build_app(load_config(minimal_config(tmp_path)))
    upgrade(app.engine)
    now = datetime(2026, 12, 1, 12, tzinfo=UTC)
    with app.sessions.begin() as s:
        mb = repo.get_or_create_mailbox(s, "s@example.com", now)
        s.add(HistoryImport(mailbox_id=mb.id, role="inbox", folder="INBOX", uidvalidity=1,
                            boundary_uid=1001, cursor_uid=420, total=1000, done=420,
                            started_at=now, updated_at=now))
    ok, body = health(app)
    assert ok, body
    [history] = [c for c in body["checks"] if c["name"] == "history"]
    assert history == {"name": "history", "ok": True,
                       "detail": "importing history: 42% (420 of 1,000 messages)"}


@pytest.mark.parametrize("listen", ["9465", "localhost", "localhost:0", ":9465", "h:99999"])
def test_bad_listen_addresses_are_one_line_errors(listen: str) -> None:
    with pytest.raises(ConfigError, match=r"^http\.listen: expected HOST:PORT"):
        parse_config({"mailbox": {"address": "a@b.c", "imap_host": "h", "username": "u"},
                      "http": {"listen": listen}}, Path("/x/maild.toml"))
