# ruff: noqa: F811  (the fixtures imported from test_oauth2 are parameters here)
"""Issue 14, second slice: a person's consent (refresh_token flow) end to end against the
local stand-in. The test plays the person: it follows the device-code verification
(Microsoft) or GETs the authorization URL so the stand-in redirects to `maild auth login`'s
loopback port (Google, PKCE). Then the daemon logs in to Dovecot (IMAP) and sends through the
sink (SMTP) with tokens renewed from the refresh token, which the stand-in rotates on every
refresh. Also: revoked grants, a Microsoft app with a certificate instead of a secret, and
an IMAP server that offers only OAUTHBEARER."""

from __future__ import annotations

import email
import json
import os
import re
import shutil
import ssl
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from devstack.dovecot import DovecotServer, ImapAccount, make_workdir
from devstack.maildconfig import maild_config_text
from devstack.oauth2 import TokenServer
from devstack.smtpsink import SmtpSink
from tests.integration.stack import (
    REPO,
    Daemon,
    assert_each_once,
    folder_messages,
    maild_cmd,
    wait_until,
)
from tests.integration.test_oauth2 import (  # noqa: F401  (fixtures)
    customer_mail,
    oauth_dovecot,
    sink,
    token_server,
)

pytestmark = pytest.mark.integration
TENANT = "contoso.example"
SECRET_ENV = "MAILD_TEST_GOOGLE_SECRET"


@dataclass(frozen=True)
class Consent:
    address: str
    client_id: str
    secret: str | None
    token_file: Path
    config: Path


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """The consent flows do not depend on the database: one backend is enough here."""
    return f"sqlite:///{tmp_path / 'maild.db'}"


def new_address(dovecot: DovecotServer) -> str:
    address = f"support-{uuid.uuid4().hex[:10]}@example.com"
    dovecot.add_oauth_user(address)
    return address


def write_config(tmp: Path, address: str, dovecot: DovecotServer, db_url: str,
                 sink: SmtpSink | None, oauth2: str) -> Path:
    path = tmp / "maild.toml"
    path.write_text(maild_config_text(
        address=address, imap_port=dovecot.imap_port, ca_file=dovecot.ca_file, db_url=db_url,
        password_env="UNUSED", smtp_port=sink.port if sink else None, oauth2=oauth2))
    return path


def microsoft_consent(dovecot: DovecotServer, tokens: TokenServer, db_url: str,
                      sink: SmtpSink | None, tmp: Path) -> Consent:
    address = new_address(dovecot)
    client_id = f"pub-{uuid.uuid4().hex[:8]}"
    tokens.add_public_client(client_id)
    dovecot.trust_jwt_key(client_id, tokens.public_pem)
    token_file = tmp / "state" / "oauth-support.json"
    oauth2 = (f'flow = "refresh_token"\ntenant = "{TENANT}"\nclient_id = "{client_id}"\n'
              f'authority = "{tokens.authority(TENANT)}"\nca_file = "{tokens.ca_file}"\n'
              f'token_file = "{token_file}"\n')
    config = write_config(tmp, address, dovecot, db_url, sink, oauth2)
    return Consent(address, client_id, None, token_file, config)


def google_consent(dovecot: DovecotServer, tokens: TokenServer, db_url: str,
                   sink: SmtpSink | None, tmp: Path) -> Consent:
    address = new_address(dovecot)
    client_id = f"{uuid.uuid4().int % 10**12}-app.apps.googleusercontent.example"
    secret = f"GOCSPX-{uuid.uuid4().hex}"
    tokens.add_public_client(client_id, secret)
    dovecot.trust_jwt_key(client_id, tokens.public_pem)
    token_file = tmp / "oauth-google.json"
    oauth2 = (f'flow = "refresh_token"\nprovider = "google"\nclient_id = "{client_id}"\n'
              f'client_secret_env = "{SECRET_ENV}"\ntoken_url = "{tokens.google_token_url}"\n'
              f'auth_url = "{tokens.google_auth_url}"\nca_file = "{tokens.ca_file}"\n'
              f'token_file = "{token_file}"\n')
    config = write_config(tmp, address, dovecot, db_url, sink, oauth2)
    return Consent(address, client_id, secret, token_file, config)


def env(c: Consent) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k != SECRET_ENV}
    return {**base, SECRET_ENV: c.secret} if c.secret else base


def maild(c: Consent, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(maild_cmd(c.config, *args), env=env(c), capture_output=True,
                          text=True, timeout=120, cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError(f"maild {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def https_get(url: str, ca_file: Path) -> str:
    ctx = ssl.create_default_context(cafile=str(ca_file))
    with urllib.request.urlopen(url, context=ctx, timeout=10) as resp:  # noqa: S310
        return str(resp.read().decode())


def start_login(c: Consent, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(maild_cmd(c.config, "auth", "login", "--mailbox", c.address,
                                      *extra), env=env(c), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO)


def read_until(proc: subprocess.Popen[str], pattern: str) -> tuple[re.Match[str], str]:
    """Lines of the login's stdout until one matches (fails if it exits first)."""
    seen = ""
    assert proc.stdout is not None
    for line in proc.stdout:
        seen += line
        found = re.search(pattern, line)
        if found:
            return found, seen
    proc.wait(10)
    raise AssertionError(f"maild auth login printed no {pattern!r}:\n{seen}\n"
                         f"{proc.stderr.read() if proc.stderr else ''}")


def finish(proc: subprocess.Popen[str], seen: str) -> str:
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, seen + out + err
    return seen + out + err


def device_code_login(c: Consent, tokens: TokenServer, user: str, *extra: str) -> str:
    """`maild auth login` with the test as the person who opens the page and types the code."""
    proc = start_login(c, *extra)
    found, seen = read_until(proc, r"open the page (\S+) and enter the code (\S+)")
    https_get(f"{found.group(1)}?user_code={found.group(2)}&login={user}", tokens.ca_file)
    return finish(proc, seen)


def loopback_login(c: Consent, tokens: TokenServer, user: str) -> str:
    """`maild auth login` with the test as the browser: the authorization URL redirects to
    maild's loopback port, which takes the code (PKCE-checked at the token endpoint)."""
    proc = start_login(c)
    found, seen = read_until(proc, r"^(https://\S+)$")
    assert "code_challenge_method=S256" in found.group(1)
    page = https_get(f"{found.group(1)}&login={user}", tokens.ca_file)
    assert "maild has the consent" in page
    return finish(proc, seen)


def assert_token_file_private(c: Consent) -> dict[str, object]:
    assert (c.token_file.stat().st_mode & 0o777) == 0o600
    assert not list(c.token_file.parent.glob(f".{c.token_file.name}.*.tmp"))
    return dict(json.loads(c.token_file.read_text()))


def assert_no_secrets(tokens: TokenServer, c: Consent, *outputs: str) -> None:
    text = "".join(outputs)
    assert "eyJ" not in text  # no JWT (access or id token)
    assert "code=" not in text  # no authorization code
    for rt in tokens.users.issued_refresh_tokens:
        assert rt not in text
    if c.secret:
        assert c.secret not in text


def ingest_and_reply(c: Consent, dovecot: DovecotServer, sink: SmtpSink, subject: str,
                     *flags: str) -> subprocess.CompletedProcess[str]:
    customer = dovecot.create_account(prefix="customer", domain="example.org")
    before = len(sink.messages)
    dovecot.deliver(c.address, customer_mail(customer.address, c.address, subject,
                                             f"<{uuid.uuid4().hex}@example.org>"))
    run = maild(c, *flags, "run", "--once")
    assert len(sink.messages) == before + 1, run.stderr
    reply = email.message_from_bytes(folder_messages(customer, "INBOX")[0])
    assert reply["Subject"].startswith(f"Re: {subject}")
    return run


def test_microsoft_device_code_login_then_imap_and_smtp_with_rotated_refresh_tokens(
        oauth_dovecot: DovecotServer, token_server: TokenServer, sink: SmtpSink,
        sqlite_url: str, tmp_path: Path) -> None:
    c = microsoft_consent(oauth_dovecot, token_server, sqlite_url, sink, tmp_path)
    login = device_code_login(c, token_server, c.address)
    assert f"logged in: {c.address} for {c.address} (microsoft)" in login
    stored = assert_token_file_private(c)
    assert stored["provider"] == "microsoft" and stored["account"] == c.address
    maild(c, "db", "upgrade")
    refreshes = token_server.users.refreshes
    first = ingest_and_reply(c, oauth_dovecot, sink, "Order missing")
    assert token_server.users.refreshes > refreshes  # the token came from the refresh token
    assert set(sink.xoauth2_logins) >= {c.address}
    # The stand-in rotated the refresh token; only the newest works, and maild kept it.
    assert token_server.users.live_refresh_tokens(c.address) == 1
    # Even at DEBUG (the libraries' loggers included) no token reaches a log line.
    second = ingest_and_reply(c, oauth_dovecot, sink, "Another question", "--log-level",
                              "DEBUG")
    status = json.loads(maild(c, "auth", "status", "--json").stdout)
    [row] = status
    assert (row["flow"], row["provider"], row["account"], row["state"]) == \
        ("refresh_token", "microsoft", c.address, "ok")
    assert "offline_access" in row["scopes"] and row["token_file"] == str(c.token_file)
    assert datetime.fromisoformat(row["last_refresh"]) > datetime.now(UTC) - timedelta(
        minutes=1)
    assert datetime.fromisoformat(row["token_expires_at"]) > datetime.now(UTC)
    check = maild(c, "check")
    assert "[  ok] oauth2 mailbox (refresh_token)" in check.stdout
    assert_token_file_private(c)
    assert_no_secrets(token_server, c, login, first.stdout, first.stderr, second.stdout,
                      second.stderr, check.stdout, check.stderr, json.dumps(status))


def test_microsoft_revoked_refresh_token_is_one_line_saying_to_log_in_again(
        oauth_dovecot: DovecotServer, token_server: TokenServer, sink: SmtpSink,
        sqlite_url: str, tmp_path: Path) -> None:
    c = microsoft_consent(oauth_dovecot, token_server, sqlite_url, sink, tmp_path)
    device_code_login(c, token_server, c.address)
    maild(c, "db", "upgrade")
    assert token_server.users.revoke(c.address) >= 1
    run = maild(c, "run", "--once", check=False)
    assert run.returncode != 0
    lines = [x for x in run.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, run.stderr
    assert "AADSTS50173 (invalid_grant)" in lines[0]
    assert f"run `maild auth login --mailbox {c.address}`" in lines[0]
    assert sink.messages == [] or all(m.auth_user != c.address for m in sink.messages)
    # Logging in again fixes it.
    out = device_code_login(c, token_server, c.address, "--json")
    status = json.loads(out[out.index("{"):])
    assert (status["account"], status["state"]) == (c.address, "ok")
    ingest_and_reply(c, oauth_dovecot, sink, "After the new login")
    assert_no_secrets(token_server, c, run.stdout, run.stderr)


def test_device_code_declined_stores_nothing(
        oauth_dovecot: DovecotServer, token_server: TokenServer, sqlite_url: str,
        tmp_path: Path) -> None:
    c = microsoft_consent(oauth_dovecot, token_server, sqlite_url, None, tmp_path)
    proc = start_login(c)
    found, _ = read_until(proc, r"open the page (\S+) and enter the code (\S+)")
    https_get(f"{found.group(1)}?user_code={found.group(2)}&login={c.address}&decline=1",
              token_server.ca_file)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "AADSTS70019" in err or "authorization_declined" in err, err
    assert not c.token_file.exists()
    status = maild(c, "auth", "status", check=False)
    assert status.returncode == 1 and "does not exist: run `maild auth login" in status.stdout


def test_google_installed_app_login_with_pkce_then_imap_and_smtp(
        oauth_dovecot: DovecotServer, token_server: TokenServer, sink: SmtpSink,
        sqlite_url: str, tmp_path: Path) -> None:
    c = google_consent(oauth_dovecot, token_server, sqlite_url, sink, tmp_path)
    login = loopback_login(c, token_server, c.address)
    stored = assert_token_file_private(c)
    assert stored["provider"] == "google" and stored["refresh_token"]
    maild(c, "db", "upgrade")
    run = ingest_and_reply(c, oauth_dovecot, sink, "Where is it")
    assert json.loads(c.token_file.read_text())["refresh_token"] != stored["refresh_token"]
    run2 = ingest_and_reply(c, oauth_dovecot, sink, "Still waiting",  # the rotated one works
                            "--log-level", "DEBUG")
    [row] = json.loads(maild(c, "auth", "status", "--json").stdout)
    assert (row["provider"], row["account"], row["scopes"]) == \
        ("google", c.address, ["https://mail.google.com/"])
    # Revoked: one line with Google's error code and what to do.
    token_server.users.revoke(c.address)
    bad = maild(c, "run", "--once", check=False)
    [line] = [x for x in bad.stderr.splitlines() if x.strip()]
    assert "invalid_grant: Token has been expired or revoked." in line
    assert f"run `maild auth login --mailbox {c.address}`" in line
    assert_no_secrets(token_server, c, login, run.stdout, run.stderr, run2.stdout,
                      run2.stderr, bad.stdout, bad.stderr)


def test_google_login_with_a_wrong_client_secret_stores_nothing(
        oauth_dovecot: DovecotServer, token_server: TokenServer, sqlite_url: str,
        tmp_path: Path) -> None:
    c = google_consent(oauth_dovecot, token_server, sqlite_url, None, tmp_path)
    wrong = Consent(c.address, c.client_id, "GOCSPX-wrong", c.token_file, c.config)
    proc = start_login(wrong)
    found, _ = read_until(proc, r"^(https://\S+)$")
    https_get(f"{found.group(1)}&login={c.address}", token_server.ca_file)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "invalid_client" in err and "GOCSPX" not in err
    assert not c.token_file.exists()


def make_certificate(tmp: Path, name: str) -> tuple[Path, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
            .sign(key, hashes.SHA256()))
    path = tmp / f"{name}.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption())
                     + cert.public_bytes(serialization.Encoding.PEM))
    path.chmod(0o600)
    return path, cert


def test_microsoft_app_with_a_certificate_instead_of_a_secret(
        oauth_dovecot: DovecotServer, token_server: TokenServer, sink: SmtpSink,
        sqlite_url: str, tmp_path: Path) -> None:
    address = new_address(oauth_dovecot)
    client_id = f"cert-{uuid.uuid4().hex[:8]}"
    pem, cert = make_certificate(tmp_path, "app")
    token_server.add_certificate_client(client_id, cert, address)
    oauth_dovecot.trust_jwt_key(client_id, token_server.public_pem)
    oauth2 = (f'flow = "client_credentials"\ntenant = "{TENANT}"\nclient_id = "{client_id}"\n'
              f'certificate_file = "{pem}"\nauthority = "{token_server.authority(TENANT)}"\n'
              f'ca_file = "{token_server.ca_file}"\n')
    c = Consent(address, client_id, None, tmp_path / "unused.json",
                write_config(tmp_path, address, oauth_dovecot, sqlite_url, sink, oauth2))
    maild(c, "db", "upgrade")
    run = ingest_and_reply(c, oauth_dovecot, sink, "Certificate")
    assert "PRIVATE KEY" not in run.stdout + run.stderr
    # Another key and certificate (not the one registered): the assertion is refused.
    other, _ = make_certificate(tmp_path, "other")
    c.config.write_text(c.config.read_text().replace(str(pem), str(other)))
    bad = maild(c, "run", "--once", check=False)
    [line] = [x for x in bad.stderr.splitlines() if x.strip()]
    assert "AADSTS700027" in line and "certificate_file" in line
    assert "PRIVATE KEY" not in bad.stdout + bad.stderr


@pytest.fixture(scope="module")
def bearer_only_dovecot() -> Iterator[DovecotServer]:
    workdir = make_workdir("devstack-oauthbearer-")
    server = DovecotServer(workdir, oauth2=True, oauth2_mechanisms=("oauthbearer",))
    try:
        server.start()
        yield server
    finally:
        server.stop()
        if not os.environ.get("DEVSTACK_KEEP"):
            shutil.rmtree(workdir, ignore_errors=True)


def test_imap_login_with_oauthbearer_where_the_server_offers_only_that(
        bearer_only_dovecot: DovecotServer, token_server: TokenServer, sqlite_url: str,
        tmp_path: Path) -> None:
    c = microsoft_consent(bearer_only_dovecot, token_server, sqlite_url, None, tmp_path)
    device_code_login(c, token_server, c.address)
    maild(c, "db", "upgrade")
    customer = bearer_only_dovecot.create_account(prefix="customer", domain="example.org")
    bearer_only_dovecot.deliver(c.address, customer_mail(customer.address, c.address, "Hi",
                                                         "<b1@example.org>"))
    run = maild(c, "run", "--once", "--json")
    assert json.loads(run.stdout)["new_tickets"] == 1
    log = bearer_only_dovecot.log_path.read_text()
    assert f"Login: user=<{c.address}>, method=OAUTHBEARER" in log
    assert "method=XOAUTH2" not in log


def short_token_setup(oauth_dovecot: DovecotServer, token_server: TokenServer, sink: SmtpSink,
                      sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                      ) -> tuple[Consent, list[ImapAccount], ImapAccount, int]:
    """A device-code login, a migrated database, 5-second tokens and two customers."""
    c = microsoft_consent(oauth_dovecot, token_server, sqlite_url, sink, tmp_path)
    device_code_login(c, token_server, c.address)
    maild(c, "db", "upgrade")
    monkeypatch.setattr(token_server, "lifetime", 5)
    customers = [oauth_dovecot.create_account(prefix="customer", domain="example.org")
                 for _ in range(2)]
    account = ImapAccount(c.address, "", "localhost", oauth_dovecot.imap_port, 0,
                          oauth_dovecot.ca_file)
    before = len(sink.messages)
    return c, customers, account, before


@pytest.mark.slow
def test_daemon_renews_5_second_tokens_from_the_refresh_token(
        oauth_dovecot: DovecotServer, token_server: TokenServer, sink: SmtpSink,
        sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    c, customers, account, before = short_token_setup(
        oauth_dovecot, token_server, sink, sqlite_url, tmp_path, monkeypatch)
    with Daemon(c.config, account) as daemon:
        for i, customer in enumerate(customers):
            if i:
                time.sleep(6)  # every token fetched so far has expired now
            oauth_dovecot.deliver(c.address, customer_mail(
                customer.address, c.address, f"Question {i}", f"<rt{i}-{c.client_id}@x>"))
            wait_until(lambda i=i: len(sink.messages) == before + i + 1, 30,
                       f"ETA reply {i}", daemon.log)
        assert daemon.stop() == 0
    assert all(len(folder_messages(x, "INBOX")) == 1 for x in customers)
    assert_each_once(sqlite_url, 2, replies_queued=True)
    assert token_server.users.live_refresh_tokens(c.address) == 1
    assert " ERROR " not in daemon.output
    assert_no_secrets(token_server, c, daemon.output)
    logins = oauth_dovecot.log_path.read_text().count(
        f"Login: user=<{c.address}>, method=XOAUTH2")
    assert logins >= 3


@pytest.mark.slow
def test_daemon_reports_a_revoked_grant_and_recovers_after_a_new_login(
        oauth_dovecot: DovecotServer, token_server: TokenServer, sink: SmtpSink,
        sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    c, customers, account, before = short_token_setup(
        oauth_dovecot, token_server, sink, sqlite_url, tmp_path, monkeypatch)
    with Daemon(c.config, account) as daemon:
        oauth_dovecot.deliver(c.address, customer_mail(
            customers[0].address, c.address, "First", f"<v0-{c.client_id}@x>"))
        wait_until(lambda: len(sink.messages) == before + 1, 30, "the first reply", daemon.log)
        token_server.users.revoke(c.address)
        wait_until(lambda: "AADSTS50173" in daemon.output, 30, "the refusal", daemon.log)
        device_code_login(c, token_server, c.address)  # the daemon reads the new file
        oauth_dovecot.deliver(c.address, customer_mail(
            customers[1].address, c.address, "Second", f"<v1-{c.client_id}@x>"))
        wait_until(lambda: len(sink.messages) == before + 2, 60, "the second reply",
                   daemon.log)
        assert daemon.stop() == 0
    refusals = [x for x in daemon.output.splitlines() if "AADSTS50173" in x]
    assert refusals and all(f"run `maild auth login --mailbox {c.address}`" in x
                            for x in refusals)
    assert len(refusals) < 20 and "Traceback" not in daemon.output  # backoff, no busy loop
    assert_no_secrets(token_server, c, daemon.output)
