"""Running maild as a service, without mail servers (issue 16, deliverable 5): the first
run mails no digest of the day before, a manual digest never blocks the scheduled one,
one `maild run` per SQLite database, database paths and errors in one line, the IMAP
protocol trace behind its own switch, scheduled jobs logged, and the hint for a
`security` that does not match the port."""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import ssl
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from maild.app import App, build_app
from maild.cli import main
from maild.clock import FixedClock
from maild.config import load_config
from maild.errors import MaildError
from maild.locks import sqlite_instance_lock
from maild.logs import setup_logging
from maild.mailbox import security_hint
from maild.schedule import digest_message_id, job_digest, run_due
from maild.store import repo
from maild.store.db import upgrade
from maild.store.models import OutboxRow
from tests.test_replying import REPO, SUPPORT, write_config

DIGEST = '[digest]\nto = ["manager@example.com"]\nat = "08:00"\n'


def app_at(tmp_path: Path, now: datetime, extra: str = DIGEST) -> App:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'maild.db'}", extra)
    app = build_app(load_config(config), FixedClock(now), environ={})
    upgrade(app.engine)
    return app


def first_run(app: App) -> None:
    """What a first `run --once` does before the jobs: store the mailbox."""
    with app.sessions.begin() as s:
        repo.get_or_create_mailbox(s, SUPPORT, app.clock.now())


def digest_ids(app: App) -> list[str]:
    with app.sessions() as s:
        return list(s.scalars(select(OutboxRow.message_id).where(OutboxRow.kind == "digest")
                              .order_by(OutboxRow.id)))


def test_a_new_install_mails_no_digest_for_the_day_before_its_first_run(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    app = app_at(tmp_path, datetime(2026, 11, 3, 10, 30, tzinfo=UTC))  # sla.timezone: UTC
    assert job_digest(app) == {"digest": "2026-11-02 skipped: maild has not run yet"}
    first_run(app)
    with caplog.at_level(logging.INFO, "maild.schedule"):
        assert job_digest(app) == {"digest": "2026-11-02 skipped: maild first ran on "
                                             "2026-11-03"}
    assert "no digest for 2026-11-02: maild first ran on 2026-11-03" in caplog.text
    assert digest_ids(app) == []
    assert isinstance(app.clock, FixedClock)
    app.clock.set(datetime(2026, 11, 4, 8, 0, tzinfo=UTC))  # next morning: its first day
    assert job_digest(app) == {"digest": "2026-11-03 queued"}
    assert digest_ids(app) == [digest_message_id(datetime(2026, 11, 3).date(), SUPPORT)]


def test_a_manual_send_has_its_own_message_id_and_the_scheduled_one_still_goes(
        tmp_path: Path) -> None:
    app = app_at(tmp_path, datetime(2026, 11, 2, 7, 0, tzinfo=UTC))
    first_run(app)
    assert isinstance(app.clock, FixedClock)
    app.clock.set(datetime(2026, 11, 3, 7, 0, tzinfo=UTC))  # before digest.at
    day = datetime(2026, 11, 2).date()
    assert job_digest(app, day, force=True) == {"digest": "2026-11-02 queued"}
    scheduled = digest_message_id(day, SUPPORT)
    assert digest_ids(app)[0] != scheduled
    app.clock.set(datetime(2026, 11, 3, 8, 0, tzinfo=UTC))  # the scheduled digest
    assert job_digest(app) == {"digest": "2026-11-02 queued"}
    assert job_digest(app) == {"digest": "2026-11-02 already sent"}
    assert job_digest(app, day, force=True) == {"digest": "2026-11-02 queued"}  # again, by hand
    ids = digest_ids(app)
    assert len(ids) == 3 and ids.count(scheduled) == 1 and len(set(ids)) == 3


def test_scheduled_jobs_log_each_run_and_skip(tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    app = app_at(tmp_path, datetime(2026, 11, 3, 7, 0, tzinfo=UTC))  # digest not due
    with caplog.at_level(logging.DEBUG, "maild.schedule"):
        run_due(app)
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("scheduled job sla ran in ") for line in lines), lines
    assert any(line.startswith("scheduled job digest skipped in ") and "not due" in line
               for line in lines), lines


def test_one_maild_run_per_sqlite_database(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    app = app_at(tmp_path, datetime(2026, 11, 3, 4, 0, tzinfo=UTC), extra="")
    with sqlite_instance_lock(app.engine) as held:
        assert held == tmp_path / "maild.db.run-lock"
        assert held.read_text().strip() == str(os.getpid())
        refused = (rf"^another maild run \(pid {os.getpid()}\) is using the SQLite database "
                   rf"{tmp_path}/maild.db: SQLite runs one instance")
        with pytest.raises(MaildError, match=refused), sqlite_instance_lock(app.engine):
            pass
        code = main(["--config", str(app.config.path), "run", "--once"])
        err = capsys.readouterr().err
        assert code == 1 and err.count("\n") == 1 and "another maild run" in err
    with sqlite_instance_lock(app.engine) as again:  # released with its holder
        assert again is not None


@pytest.mark.parametrize(("where", "expected"), [
    ("missing/sub/maild.db", "the directory {d}/missing/sub does not exist"),
])
def test_database_path_errors_are_one_line_naming_the_path(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str, expected: str) -> None:
    config = write_config(tmp_path, f"sqlite:///{where}")
    for command in (["db", "upgrade"], ["run", "--once"], ["tickets", "list"]):
        code = main(["--config", str(config), *command])
        err = capsys.readouterr().err
        assert code == 1, err
        assert err == (f"maild: error: database {tmp_path}/{where}: "
                       f"{expected.format(d=tmp_path)}\n")
    code = main(["--config", str(config), "check"])
    out = capsys.readouterr().out
    assert f"[FAIL] database: database {tmp_path}/{where}: the directory" in out


def test_unwritable_database_directory_is_one_line() -> None:
    """The relative-URL trap of getting-started: the database would land in the config's
    directory, which the service user cannot write. Run as `nobody` when the tests run
    as root (root may write anywhere), else in a directory made read-only."""
    root = os.geteuid() == 0
    etc = Path(tempfile.mkdtemp(prefix="maild-ops-etc-"))
    try:
        config = write_config(etc, "sqlite:///maild.db")
        config.chmod(0o644)
        etc.chmod(0o755 if root else 0o555)
        drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if root else []
        proc = subprocess.run([*drop, sys.executable, "-m", "maild.cli", "--config", str(config),
                               "db", "upgrade"], capture_output=True, text=True, timeout=120,
                              cwd=REPO)
        user = "nobody" if root else pwd.getpwuid(os.geteuid()).pw_name
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.startswith(f"maild: error: database {etc}/maild.db: the directory "
                                      f"{etc} is not writable by user {user}"), proc.stderr
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
        assert 'url = "sqlite:////var/lib/maild/maild.db"' in proc.stderr
    finally:
        etc.chmod(0o755)
        shutil.rmtree(etc, ignore_errors=True)


def test_relative_sqlite_url_is_printed_resolved(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, "sqlite:///maild.db")
    assert main(["--config", str(config), "db", "upgrade"]) == 0
    assert f"database sqlite:///{tmp_path}/maild.db: empty -> " in capsys.readouterr().out


def test_imap_protocol_trace_needs_its_own_switch() -> None:
    try:
        setup_logging("DEBUG")
        assert not logging.getLogger("imapclient.imaplib").isEnabledFor(logging.DEBUG)
        assert logging.getLogger("maild.poller").isEnabledFor(logging.DEBUG)
        setup_logging("DEBUG", trace_imap=True)
        assert logging.getLogger("imapclient.imaplib").isEnabledFor(logging.DEBUG)
    finally:
        setup_logging("WARNING")


def test_security_hints() -> None:
    wrong_version = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c)")
    assert 'For port 143 use security = "starttls"' in security_hint("tls", 143, wrong_version)
    timeout = TimeoutError("timed out")
    hint = security_hint("starttls", 993, timeout)
    assert "no IMAP greeting within 10 s" in hint and 'use security = "tls"' in hint
    assert "Port 993" not in security_hint("none", 1143, timeout)
    assert security_hint("tls", 993, ConnectionRefusedError(111, "Connection refused")) == ""
    smtp = security_hint("starttls", 465, TimeoutError("Timed out connecting"), service="SMTP",
                         wait=30)
    assert "no SMTP greeting within 30 s" in smtp and 'Port 465 is implicit TLS' in smtp
