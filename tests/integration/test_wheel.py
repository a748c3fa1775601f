"""maild as an admin installs it: `maild init`'s config passes `maild check` against real
servers, and a wheel built from this tree, installed into a fresh venv outside it, runs
customer mail in Dovecot -> ticket -> ETA reply at the SMTP sink on its own (`run --once`,
then the daemon). The venv gets its dependencies from the package index (network)."""

from __future__ import annotations

import email
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.dovecot import DovecotServer, ImapAccount
from devstack.smtpsink import SmtpSink
from maild.cli import main
from tests.integration.stack import REPO

pytestmark = pytest.mark.integration


def set_keys(text: str, section: str, values: dict[str, str | int | bool]) -> str:
    """Edit `maild init`'s config as an admin would: set keys of one [section] (a key
    already set is replaced, a new one goes right under the section's header)."""
    head = f"\n[{section}]\n"
    start = text.index(head) + len(head)
    end = text.find("\n[", start)
    body = text[start:end]
    added = []
    for key, value in values.items():
        line = f"{key} = {json.dumps(value)}"
        body, count = re.subn(rf"(?m)^{key} = .*$", line, body)
        if not count:
            added.append(line)
    return text[:start] + "".join(f"{a}\n" for a in added) + body + text[end:]


def fill_in(config: Path, account: ImapAccount, sink: SmtpSink) -> dict[str, str]:
    """The values `maild init` leaves for the admin; the environment maild needs."""
    text = config.read_text()
    text = set_keys(text, "mailbox", {"address": account.address, "username": account.address,
                                      "imap_host": "localhost", "imap_port": account.port,
                                      "security": "starttls", "ca_file": str(account.ca_file)})
    text = set_keys(text, "smtp", {"host": "127.0.0.1", "port": sink.port,
                                   "username": sink.username, "ca_file": str(sink.ca_file)})
    config.write_text(text)
    return {"MAILD_IMAP_PASSWORD": account.password, "MAILD_SMTP_PASSWORD": sink.password}


@pytest.fixture
def auth_sink(dovecot: DovecotServer) -> Iterator[SmtpSink]:
    """An SMTP server as the starter config expects one: STARTTLS and a login."""
    with SmtpSink(require_auth=True, starttls=True, username="support-smtp",
                  password="s3cret", deliver_to=dovecot) as sink:
        yield sink


def test_init_config_passes_check_against_real_servers(
        tmp_path: Path, imap_account: ImapAccount, auth_sink: SmtpSink,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["init", str(tmp_path / "etc")]) == 0
    config = tmp_path / "etc" / "maild.toml"
    for name, value in fill_in(config, imap_account, auth_sink).items():
        monkeypatch.setenv(name, value)
    assert main(["--config", str(config), "db", "upgrade"]) == 0
    capsys.readouterr()
    assert main(["--config", str(config), "check", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert all(r["ok"] for r in results), results
    names = {r["name"] for r in results}
    assert {"rules", "macros", "database", "smtp", f"imap {imap_account.address}"} <= names
    assert str(tmp_path / "etc" / "rules") in next(
        r["detail"] for r in results if r["name"] == "rules")


def customer_mail(frm: str, to: str) -> bytes:
    return (f"From: Ann Customer <{frm}>\r\nTo: {to}\r\nSubject: Order missing\r\n"
            "Message-ID: <wheel-1@example.org>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\n"
            "Hello, my order #1234 has not arrived yet.\r\n").encode()


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 600
        ) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n" \
                                 f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.mark.slow
def test_wheel_installed_in_a_fresh_venv_runs_end_to_end(
        tmp_path: Path, dovecot: DovecotServer, imap_account: ImapAccount,
        auth_sink: SmtpSink) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "MAILD_CONFIG")}
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(REPO)],
        tmp_path, env)
    [wheel] = dist.glob("maild-*.whl")
    venv = tmp_path / "venv"  # without pip of its own (saves ~15 s): this pip installs into it
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, env)
    run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
         "--no-compile", str(wheel)], tmp_path, env)
    where = run([str(venv / "bin" / "python"), "-c", "import maild; print(maild.__file__)"],
                tmp_path, env).stdout.strip()
    assert where.startswith(str(venv)), where  # the installed package, not this checkout

    maild = str(venv / "bin" / "maild")
    site = tmp_path / "site"  # an admin's directory, far from the source tree
    run([maild, "init", str(site / "etc")], tmp_path, env)
    config = site / "etc" / "maild.toml"
    env.update(fill_in(config, imap_account, auth_sink))
    dovecot.deliver(imap_account.address,
                    customer_mail("ann@example.org", imap_account.address))
    upgraded = run([maild, "--config", str(config), "db", "upgrade"], site, env).stdout
    assert "-> " in upgraded and str(site / "etc" / "maild.db") in upgraded
    run([maild, "--config", str(config), "check"], site, env)
    out = run([maild, "--config", str(config), "run", "--once", "--json"], site, env).stdout
    assert json.loads(out)["new_tickets"] == 1
    [sent] = auth_sink.wait_for(1)
    reply = email.message_from_bytes(sent.raw)
    assert reply["In-Reply-To"] == "<wheel-1@example.org>"
    assert reply["Auto-Submitted"] == "auto-replied" and "[#" in reply["Subject"]
    assert sent.rcpt_tos == ("ann@example.org",)
    shown = json.loads(run([maild, "--config", str(config), "tickets", "show", "1", "--json"],
                           site, env).stdout)
    assert [m["auto"] for m in shown["messages"]][:2] == [False, True]

    # the daemon itself: new mail while it runs gets its ETA reply; SIGTERM stops it cleanly
    log = site / "run.log"
    with log.open("w") as out:
        daemon = subprocess.Popen([maild, "--config", str(config), "run"], cwd=site, env=env,
                                  stdout=out, stderr=subprocess.STDOUT)
    try:
        dovecot.deliver(imap_account.address, customer_mail(
            "bora@example.org", imap_account.address).replace(b"wheel-1", b"wheel-2"))
        second = auth_sink.wait_for(2, timeout=90)[1]
        assert email.message_from_bytes(second.raw)["In-Reply-To"] == "<wheel-2@example.org>"
        daemon.terminate()
        assert daemon.wait(timeout=30) == 0, log.read_text()[-3000:]
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
