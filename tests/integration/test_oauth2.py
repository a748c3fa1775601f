"""Issue 14, first slice: Microsoft-style app-only OAuth2 (client credentials, msal)
against the local stand-in: a token endpoint, Dovecot's oauth2 passdb validating the
JWTs locally, and the SMTP sink accepting AUTH XOAUTH2 under the same rules."""

from __future__ import annotations

import email
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import imapclient
import pytest
from imapclient.exceptions import LoginError

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

pytestmark = pytest.mark.integration
SECRET_ENV = "MAILD_TEST_OAUTH_SECRET"
TENANT = "contoso.example"


@dataclass(frozen=True)
class OAuthBox:
    address: str
    client_id: str
    secret: str
    imap_port: int
    ca_file: Path


@pytest.fixture(scope="module")
def oauth_dovecot() -> Iterator[DovecotServer]:
    workdir = make_workdir("devstack-oauth-")
    server = DovecotServer(workdir, oauth2=True)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        if not os.environ.get("DEVSTACK_KEEP"):
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def token_server(oauth_dovecot: DovecotServer) -> Iterator[TokenServer]:
    with TokenServer(oauth_dovecot.cert_file, oauth_dovecot.key_file) as server:
        yield server


def new_box(dovecot: DovecotServer, tokens: TokenServer, mailbox: str | None = None) -> OAuthBox:
    """An oauth-only mailbox and an app registration whose tokens are for `mailbox`."""
    tag = uuid.uuid4().hex[:10]
    address = f"support-{tag}@example.com"
    dovecot.add_oauth_user(address)
    client_id, secret = f"app-{tag}", f"Zx8Q~secret-{tag}-value"
    tokens.add_client(client_id, secret, mailbox or address)
    dovecot.trust_jwt_key(client_id, tokens.public_pem)
    return OAuthBox(address, client_id, secret, dovecot.imap_port, dovecot.ca_file)


@pytest.fixture
def box(oauth_dovecot: DovecotServer, token_server: TokenServer) -> OAuthBox:
    return new_box(oauth_dovecot, token_server)


@pytest.fixture
def sink(oauth_dovecot: DovecotServer, token_server: TokenServer) -> Iterator[SmtpSink]:
    with SmtpSink(deliver_to=oauth_dovecot, require_auth=True,
                  oauth2_public_key=token_server.public_pem) as s:
        yield s


def write_oauth_config(tmp: Path, box: OAuthBox, db_url: str, tokens: TokenServer,
                       sink: SmtpSink | None, secret_file: Path | None = None,
                       extra: str = "") -> Path:
    secret = (f'client_secret_file = "{secret_file}"' if secret_file
              else f'client_secret_env = "{SECRET_ENV}"')
    oauth2 = (f'flow = "client_credentials"\ntenant = "{TENANT}"\n'
              f'client_id = "{box.client_id}"\n{secret}\n'
              f'authority = "{tokens.authority(TENANT)}"\nca_file = "{tokens.ca_file}"\n')
    path = tmp / "maild.toml"
    path.write_text(maild_config_text(
        address=box.address, imap_port=box.imap_port, ca_file=box.ca_file, db_url=db_url,
        password_env="UNUSED", smtp_port=sink.port if sink else None, oauth2=oauth2,
        extra=extra))
    return path


def maild(config: Path, secret: str, *args: str, check: bool = True
          ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != SECRET_ENV}
    proc = subprocess.run(maild_cmd(config, *args), env={**env, SECRET_ENV: secret},
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError(f"maild {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def customer_mail(frm: str, to: str, subject: str, msgid: str) -> bytes:
    return (f"From: {frm}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: {msgid}\r\n"
            "Date: Mon, 02 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\n"
            "Hello, my order #1234 has not arrived yet. Can you help me?\r\n").encode()


def xoauth2_imap(dovecot: DovecotServer, user: str, token: str) -> imapclient.IMAPClient:
    client = imapclient.IMAPClient(dovecot.host, port=dovecot.imap_port, ssl=False, timeout=10)
    client.starttls(ImapAccount("", "", "", 0, 0, dovecot.ca_file).ssl_context())
    client.oauth2_login(user, token)
    return client


def test_client_credentials_ingest_and_eta_reply(
        oauth_dovecot: DovecotServer, token_server: TokenServer, box: OAuthBox,
        sink: SmtpSink, db_url: str, tmp_path: Path) -> None:
    customer = oauth_dovecot.create_account(prefix="customer", domain="example.org")
    oauth_dovecot.deliver(box.address, customer_mail(
        f"Ann <{customer.address}>", box.address, "Order missing", "<o1@example.org>"))
    config = write_oauth_config(tmp_path, box, db_url, token_server, sink)
    maild(config, box.secret, "db", "upgrade")
    run = maild(config, box.secret, "run", "--once")
    [sent] = sink.wait_for(1)
    assert sink.xoauth2_logins and set(sink.xoauth2_logins) == {box.address}
    assert sent.auth_user == box.address
    reply = email.message_from_bytes(folder_messages(customer, "INBOX")[0])
    assert reply["Subject"] == "Re: Order missing [#1]"
    assert reply["In-Reply-To"] == "<o1@example.org>"
    # The copy in Sent went in over IMAP with the token too.
    client = xoauth2_imap(oauth_dovecot, box.address,
                          token_server.mint(box.client_id, box.address))
    try:
        client.select_folder("Sent", readonly=True)
        assert len(client.search("ALL")) == 1
    finally:
        client.logout()
    assert {i.client_id for i in token_server.issued if i.mailbox == box.address} == \
        {box.client_id}
    check = maild(config, box.secret, "check")
    assert f"imap {box.address}" in check.stdout and "smtp" in check.stdout
    assert f"[  ok] oauth2 mailbox (client_credentials): got a token for {box.address}" in \
        check.stdout
    for out in (run.stdout, run.stderr, check.stdout, check.stderr):
        assert box.secret not in out


def test_wrong_client_secret_is_one_line_naming_the_aadsts_code(
        token_server: TokenServer, box: OAuthBox, sink: SmtpSink, db_url: str,
        tmp_path: Path) -> None:
    config = write_oauth_config(tmp_path, box, db_url, token_server, sink)
    maild(config, box.secret, "db", "upgrade")
    wrong = "Qq7~not-the-right-secret-value"
    run = maild(config, wrong, "run", "--once", check=False)
    assert run.returncode != 0
    errors = [line for line in run.stderr.splitlines() if "AADSTS" in line]
    assert errors and "AADSTS7000215" in errors[0] and "client_secret_env" in errors[0]
    check = maild(config, wrong, "check", check=False)
    assert check.returncode != 0
    assert "[FAIL] oauth2 mailbox (client_credentials): token request to" in check.stdout
    assert "AADSTS7000215" in check.stdout
    for out in (run.stdout, run.stderr, check.stdout, check.stderr):
        assert wrong not in out and box.secret not in out
    assert sink.messages == []


def test_token_for_another_mailbox_is_refused(
        oauth_dovecot: DovecotServer, token_server: TokenServer, sink: SmtpSink,
        db_url: str, tmp_path: Path) -> None:
    other = new_box(oauth_dovecot, token_server)
    # An app whose tokens are for `other`, configured for a second mailbox.
    box = new_box(oauth_dovecot, token_server, mailbox=other.address)
    config = write_oauth_config(tmp_path, box, db_url, token_server, sink)
    maild(config, box.secret, "db", "upgrade")
    run = maild(config, box.secret, "run", "--once", check=False)
    assert run.returncode != 0
    assert "login with an OAuth2 token (renewed once) failed" in run.stderr
    with pytest.raises(LoginError):
        xoauth2_imap(oauth_dovecot, box.address, token_server.mint(box.client_id, other.address))


def test_password_login_to_the_oauth_mailbox_is_refused(
        oauth_dovecot: DovecotServer, token_server: TokenServer, box: OAuthBox) -> None:
    for password in (box.secret, "", "pw"):
        client = imapclient.IMAPClient(oauth_dovecot.host, port=oauth_dovecot.imap_port,
                                       ssl=False, timeout=10)
        with client, pytest.raises(LoginError):
            client.login(box.address, password)
    # ... while a token for it works.
    xoauth2_imap(oauth_dovecot, box.address,
                 token_server.mint(box.client_id, box.address)).logout()


def sent_count(dovecot: DovecotServer, tokens: TokenServer, box: OAuthBox) -> int:
    client = xoauth2_imap(dovecot, box.address, tokens.mint(box.client_id, box.address))
    try:
        client.select_folder("Sent", readonly=True)
        return len(client.search("ALL"))
    finally:
        client.logout()


@pytest.mark.slow
def test_daemon_renews_5_second_tokens_without_losing_or_duplicating_mail(
        oauth_dovecot: DovecotServer, token_server: TokenServer, box: OAuthBox,
        sink: SmtpSink, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    total = 3
    customers = [oauth_dovecot.create_account(prefix="customer", domain="example.org")
                 for _ in range(total)]  # one ETA reply per sender and day: one each
    config = write_oauth_config(tmp_path, box, db_url, token_server, sink)
    maild(config, box.secret, "db", "upgrade")
    monkeypatch.setenv(SECRET_ENV, box.secret)
    monkeypatch.setattr(token_server, "lifetime", 5)
    account = ImapAccount(box.address, "", "localhost", box.imap_port, 0, box.ca_file)
    with Daemon(config, account) as daemon:
        for i in range(total):
            if i:
                time.sleep(6)  # every token fetched so far has expired now
            oauth_dovecot.deliver(box.address, customer_mail(
                customers[i].address, box.address, f"Question {i}", f"<q{i}@example.org>"))
            wait_until(lambda i=i: len(sink.messages) == i + 1, 30, f"ETA reply {i}", daemon.log)
        wait_until(lambda: sent_count(oauth_dovecot, token_server, box) == total, 30,
                   "every reply's copy in Sent", daemon.log)
        assert daemon.stop() == 0
    assert_each_once(db_url, total, replies_queued=True)
    assert all(len(folder_messages(c, "INBOX")) == 1 for c in customers)
    issued = [t for t in token_server.issued if t.client_id == box.client_id]
    assert len(issued) >= total  # renewed after each expiry, never used expired
    assert set(sink.xoauth2_logins) == {box.address}
    assert box.secret not in daemon.output and "eyJ" not in daemon.output  # no JWT logged
    assert " WARNING " not in daemon.output and " ERROR " not in daemon.output
    # The IDLE session logged in afresh before its token was due, several times.
    logins = oauth_dovecot.log_path.read_text().count(
        f"Login: user=<{box.address}>, method=XOAUTH2")
    assert logins >= 4


@pytest.mark.slow
def test_revoked_secret_is_one_line_backs_off_and_recovers_when_the_file_is_fixed(
        oauth_dovecot: DovecotServer, token_server: TokenServer, box: OAuthBox,
        sink: SmtpSink, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    customers = [oauth_dovecot.create_account(prefix="customer", domain="example.org")
                 for _ in range(2)]
    secret_file = tmp_path / "client-secret"
    secret_file.write_text(box.secret)
    config = write_oauth_config(tmp_path, box, db_url, token_server, sink, secret_file,
                                extra="[outbox]\nretry_base_seconds = 1\n"
                                      "retry_max_seconds = 2\n")
    maild(config, "", "db", "upgrade")
    monkeypatch.setattr(token_server, "lifetime", 5)
    account = ImapAccount(box.address, "", "localhost", box.imap_port, 0, box.ca_file)
    rotated = "Nw3~the-new-secret-value"
    with Daemon(config, account) as daemon:
        oauth_dovecot.deliver(box.address, customer_mail(
            customers[0].address, box.address, "First", "<r0@example.org>"))
        wait_until(lambda: len(sink.messages) == 1, 30, "the first ETA reply", daemon.log)
        token_server.set_secret(box.client_id, rotated)  # the old secret is revoked
        wait_until(lambda: "AADSTS7000215" in daemon.output, 30, "the refusal", daemon.log)
        oauth_dovecot.deliver(box.address, customer_mail(
            customers[1].address, box.address, "Second", "<r1@example.org>"))
        before = daemon.output.count("AADSTS7000215")
        # two more refused attempts after the delivery: maild tried, and could not
        wait_until(lambda: daemon.output.count("AADSTS7000215") >= before + 2, 30,
                   "two more refusals after the delivery", daemon.log)
        assert len(sink.messages) == 1  # nothing gets in or out without a token
        secret_file.write_text(rotated + "\n")  # fixed: picked up without a restart
        wait_until(lambda: len(sink.messages) == 2, 60, "the second ETA reply", daemon.log)
        assert daemon.stop() == 0
    assert_each_once(db_url, 2, replies_queued=True)
    refusals = [line for line in daemon.output.splitlines() if "AADSTS7000215" in line]
    assert refusals and all("check client_secret_file" in line for line in refusals)
    assert "Traceback" not in daemon.output
    # Backoff: a handful of attempts in these seconds, not a busy loop.
    assert len(refusals) < 20
    for secret in (box.secret, rotated):
        assert secret not in daemon.output


def write_google_config(tmp: Path, address: str, key: dict[str, str], dovecot: DovecotServer,
                        db_url: str, tokens: TokenServer, sink: SmtpSink) -> Path:
    key_file = tmp / "sa.json"
    key_file.write_text(json.dumps(key))
    key_file.chmod(0o600)
    oauth2 = (f'flow = "service_account"\nservice_account_file = "{key_file}"\n'
              f'ca_file = "{tokens.ca_file}"\n')
    path = tmp / "maild.toml"
    text = maild_config_text(
        address=address, imap_port=dovecot.imap_port, ca_file=dovecot.ca_file, db_url=db_url,
        password_env="UNUSED", smtp_port=sink.port, oauth2=oauth2)
    path.write_text(text.replace("[mailbox]\n", '[mailbox]\nprovider = "google"\n'))
    return path


def test_google_service_account_ingest_and_eta_reply(
        oauth_dovecot: DovecotServer, token_server: TokenServer, sink: SmtpSink, db_url: str,
        tmp_path: Path) -> None:
    address = f"support-{uuid.uuid4().hex[:10]}@example.com"
    oauth_dovecot.add_oauth_user(address)
    key = token_server.add_service_account()
    oauth_dovecot.trust_jwt_key(key["client_id"], token_server.public_pem)
    customer = oauth_dovecot.create_account(prefix="customer", domain="example.org")
    oauth_dovecot.deliver(address, customer_mail(customer.address, address, "Where is it",
                                                 "<g1@example.org>"))
    config = write_google_config(tmp_path, address, key, oauth_dovecot, db_url, token_server,
                                 sink)
    maild(config, "", "db", "upgrade")
    run = maild(config, "", "run", "--once")
    assert len(sink.messages) == 1, run.stderr
    assert set(sink.xoauth2_logins) == {address}
    reply = email.message_from_bytes(folder_messages(customer, "INBOX")[0])
    assert reply["Subject"] == "Re: Where is it [#1]"
    assert {i.mailbox for i in token_server.issued if i.client_id == key["client_id"]} == \
        {address}
    assert "PRIVATE KEY" not in run.stdout + run.stderr


def test_google_without_domain_wide_delegation_is_one_line(
        oauth_dovecot: DovecotServer, token_server: TokenServer, sink: SmtpSink, db_url: str,
        tmp_path: Path) -> None:
    address = f"support-{uuid.uuid4().hex[:10]}@example.com"
    oauth_dovecot.add_oauth_user(address)
    key = token_server.add_service_account(delegated=False)
    config = write_google_config(tmp_path, address, key, oauth_dovecot, db_url, token_server,
                                 sink)
    maild(config, "", "db", "upgrade")
    run = maild(config, "", "run", "--once", check=False)
    assert run.returncode != 0
    [line] = [x for x in run.stderr.splitlines() if x.strip()]
    assert "unauthorized_client: domain-wide delegation is not granted" in line
    assert "PRIVATE KEY" not in run.stdout + run.stderr


class FixedToken:
    def __init__(self, token: str) -> None:
        self.value = token

    def token(self) -> str:
        return self.value

    def invalidate(self) -> None:
        pass


def test_sink_takes_a_long_xoauth2_line_and_refuses_what_dovecot_refuses(
        token_server: TokenServer, sink: SmtpSink) -> None:
    from maild.errors import SendError
    from maild.smtp import SmtpSettings, login_check

    def check(user: str, token: str) -> str:
        return login_check(SmtpSettings("127.0.0.1", sink.port, "none", user, timeout=10,
                                        token_source=FixedToken(token)))

    long_scope = " ".join(f"https://example.com/scope{i}" for i in range(60))
    token = token_server.mint("app-long", "a@example.com", scope=long_scope)
    assert len(token) > 2000
    assert "logged in as a@example.com" in check("a@example.com", token)
    expired = token_server.mint("app-x", "a@example.com", lifetime=-10)
    for user, bad in (("b@example.com", token), ("a@example.com", expired),
                      ("a@example.com", "not-a-jwt")):
        with pytest.raises(SendError, match="535"):
            check(user, bad)
