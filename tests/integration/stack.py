"""Helpers for integration tests: a maild config pointing at the devstack
servers, IMAP seeding, and running the real `maild` CLI (in-process or as a
child process that can be killed)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import imapclient
import sqlalchemy as sa

from devstack.dovecot import ImapAccount
from devstack.maildconfig import maild_config_text
from devstack.smtpsink import SmtpSink

REPO = Path(__file__).resolve().parents[2]
PASSWORD_ENV = "MAILD_TEST_IMAP_PASSWORD"


def write_config(tmp: Path, account: ImapAccount, db_url: str, sink: SmtpSink | None = None,
                 extra: str = "", batch_size: int = 200) -> Path:
    path = tmp / "maild.toml"
    path.write_text(maild_config_text(
        address=account.address, imap_port=account.port, ca_file=account.ca_file,
        db_url=db_url, password_env=PASSWORD_ENV, smtp_port=sink.port if sink else None,
        batch_size=batch_size, extra=extra))
    return path


def env_for(account: ImapAccount) -> dict[str, str]:
    return {**os.environ, PASSWORD_ENV: account.password}


def imap(account: ImapAccount) -> imapclient.IMAPClient:
    client = imapclient.IMAPClient(account.host, port=account.port, ssl=False)
    client.starttls(account.ssl_context())
    client.login(account.address, account.password)
    return client


def append(account: ImapAccount, folder: str, raws: list[tuple[bytes, datetime | None]]) -> None:
    client = imap(account)
    try:
        for raw, when in raws:
            client.append(folder, raw, (), when)
    finally:
        client.logout()


def folder_messages(account: ImapAccount, folder: str) -> list[bytes]:
    client = imap(account)
    try:
        client.select_folder(folder, readonly=True)
        uids = client.search("ALL")
        data = client.fetch(uids, [b"BODY.PEEK[]"]) if uids else {}
        return [data[u][b"BODY[]"] for u in sorted(data)]
    finally:
        client.logout()


def maild_cmd(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "maild.cli", "--config", str(config), *args]


def run_maild(config: Path, account: ImapAccount, *args: str,
              check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(maild_cmd(config, *args), env=env_for(account), capture_output=True,
                          text=True, timeout=300, cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError(f"maild {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


class Daemon:
    """`maild run ARGS` as a child process logging to a file, so a test can wait for a
    log line instead of sleeping a guessed time. As a context manager it kills the
    process if the test leaves while it still runs."""

    def __init__(self, config: Path, account: ImapAccount, *args: str,
                 log: Path | None = None) -> None:
        self.log = log or config.parent / "maild-run.log"
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(maild_cmd(config, "run", *args), env=env_for(account),
                                         stdout=out, stderr=subprocess.STDOUT, text=True,
                                         cwd=REPO)

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait_for(self, text: str, timeout: float = 30) -> None:
        wait_until(lambda: text in self.output or not self.running(), timeout,
                   f"the log line {text!r}", self.log)
        if text not in self.output:
            raise AssertionError(f"maild exited without logging {text!r}:\n{self.output}")

    def wait(self, timeout: float = 30) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self, signum: int = 15, timeout: float = 15) -> int:
        """Send `signum` (SIGTERM by default) and wait for the exit; the exit code. If it
        does not exit in time, kill it and fail with its log, which says where it hung."""
        self.proc.send_signal(signum)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"maild did not exit within {timeout} s of signal {signum}:"
                                 f"\n{self.output}") from None

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.running():
            self.proc.kill()
            self.proc.wait()


def wait_until(cond: Callable[[], bool], timeout: float, what: str,
               log: Path | None = None) -> None:
    """Poll `cond` until true; on timeout fail naming `what` (and the log's tail)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-4000:] if log and log.exists() else ""
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}\n{tail}")
        time.sleep(0.02)


def assert_each_once(db_url: str, total: int, *, replies_queued: bool = False) -> None:
    """Every inbound message is in exactly one row, each in its own ticket, none
    quarantined; with `replies_queued`, each ticket has exactly one outbox row."""
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT count(*), count(DISTINCT message_id) FROM messages "
                                    "WHERE direction = 'in'").one()
        tickets = conn.exec_driver_sql("SELECT count(*) FROM tickets").scalar()
        quarantined = conn.exec_driver_sql("SELECT count(*) FROM quarantine").scalar()
        outbox = conn.exec_driver_sql("SELECT count(*), count(DISTINCT ticket_id) FROM outbox"
                                      ).one()
    engine.dispose()
    assert tuple(rows) == (total, total), "a message is missing or stored twice"
    assert (tickets, quarantined) == (total, 0)
    if replies_queued:
        assert outbox[0] == outbox[1] > 0  # no ticket got its ETA reply queued twice


def cli_json(config: Path, account: ImapAccount, *args: str) -> Any:
    """Run the maild CLI in-process (fast) and parse its JSON output."""
    from maild.cli import main

    out = io.StringIO()
    old = os.environ.get(PASSWORD_ENV)
    os.environ[PASSWORD_ENV] = account.password
    try:
        with contextlib.redirect_stdout(out):
            code = main(["--config", str(config), *args, "--json"])
    finally:
        if old is None:
            os.environ.pop(PASSWORD_ENV, None)
        else:
            os.environ[PASSWORD_ENV] = old
    assert code == 0, f"maild {' '.join(args)} exited {code}"
    return json.loads(out.getvalue())


def tickets_json(config: Path, account: ImapAccount, *options: str) -> list[dict[str, Any]]:
    return list(cli_json(config, account, "tickets", "list", *options))


def show_json(config: Path, account: ImapAccount, ticket_id: int) -> dict[str, Any]:
    return dict(cli_json(config, account, "tickets", "show", str(ticket_id)))




def replay_actions(config: Path, account: ImapAccount, ticks: Iterable[datetime],
                   actions: Sequence[tuple[datetime, Callable[[Any], None]]], state: Any) -> None:
    """Replay history: at each tick, the actions due then (`act(state)`), then one
    `maild run --once --now TICK`, so the daemon sees the mail as it arrived."""
    for tick in ticks:
        for at, act in actions:
            if at == tick:
                act(state)
        cli_json(config, account, "run", "--once", "--now", tick.astimezone(UTC).isoformat())
