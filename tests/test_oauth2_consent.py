"""Issue 14, refresh-token flow at unit level: the token file (0600, atomic, locked), the
grants' renewal and refusal lines with fake providers, `maild auth status` / `pick`, the
certificate reader, and the config rules for refresh_token and certificate_file."""

from __future__ import annotations

import fcntl
import json
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from maild.auth import microsoft_user
from maild.auth.login import consent_tables, pick, status_of
from maild.auth.microsoft import msal_credential, read_certificate
from maild.auth.microsoft_user import DelegatedGrant, PublicClient, describe, msal_scopes
from maild.auth.tokenfile import StoredGrant, locked, read_grant, write_grant
from maild.config import Config, parse_config
from maild.errors import AuthError, ConfigError


def grant(**kw: Any) -> StoredGrant:
    base: dict[str, Any] = {"provider": "microsoft", "client_id": "app", "account":
                            "ann@contoso.com", "scopes": ("a", "b"),
                            "msal_cache": '{"RefreshToken": {"k": {"secret": "RT-SECRET"}}}',
                            "logged_in_at": "2026-12-01T10:00:00+00:00"}
    return StoredGrant(**{**base, **kw})


def test_token_file_is_written_0600_atomically_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "state" / "oauth.json"
    g = grant().refreshed(3600)
    write_grant(path, g)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_grant(path, "x") == g
    assert [p.name for p in path.parent.iterdir()] == ["oauth.json"]  # no temp file left
    os.chmod(path, 0o644)  # a rewrite restores the mode
    write_grant(path, g.refreshed(60, msal_cache="{}"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_grant(path, "x").msal_cache == "{}"
    assert "RT-SECRET" not in repr(g)


def test_a_failed_write_leaves_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    path = tmp_path / "oauth.json"
    write_grant(path, grant())

    def boom(*a: Any, **k: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        write_grant(path, grant(account="someone-else"))
    assert read_grant(path, "x").account == "ann@contoso.com"
    assert [p.name for p in tmp_path.iterdir()] == ["oauth.json"]


@pytest.mark.parametrize(("content", "message"), [
    (None, "does not exist: run `maild auth login --mailbox s@x`"),
    ("{not json", "is not JSON: run `maild auth login --mailbox s@x` again"),
    ('{"account": "a"}', "is not a maild token file"),
])
def test_unreadable_token_files_say_what_to_run(tmp_path: Path, content: str | None,
                                                message: str) -> None:
    path = tmp_path / "oauth.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(AuthError, match=message.replace("`", ".").replace("(", ".")):
        read_grant(path, "maild auth login --mailbox s@x")


def test_the_lock_is_exclusive(tmp_path: Path) -> None:
    path = tmp_path / "oauth.json"
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        with locked(path), pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another process would wait
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released on leaving
    finally:
        os.close(fd)


class FakeMsalApp:
    def __init__(self, result: dict[str, Any] | None, accounts: int = 1) -> None:
        self.result, self.accounts, self.calls = result, accounts, []

    def get_accounts(self) -> list[dict[str, str]]:
        return [{"username": "ann@contoso.com"}] * self.accounts

    def acquire_token_silent_with_error(self, scopes: list[str], account: Any,
                                        force_refresh: bool) -> dict[str, Any] | None:
        self.calls.append((scopes, force_refresh))
        return self.result


def delegated(tmp_path: Path, app: FakeMsalApp, monkeypatch: pytest.MonkeyPatch
              ) -> DelegatedGrant:
    client = PublicClient(client_id="app", tenant="contoso", authority=None, ca_file=None)
    monkeypatch.setattr(client, "application", lambda cache: app)
    return DelegatedGrant(client=client, scopes=("https://outlook.office.com/IMAP."
                                                 "AccessAsUser.All", "offline_access"),
                          token_file=tmp_path / "oauth.json", mailbox="support@contoso.com")


def test_delegated_grant_renews_and_records_the_refresh(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    write_grant(tmp_path / "oauth.json", grant(msal_cache="{}"))
    app = FakeMsalApp({"access_token": "AT-1", "expires_in": 120})
    token = delegated(tmp_path, app, monkeypatch).fetch()
    assert (token.value, token.expires_in) == ("AT-1", 120)
    # msal refuses offline_access when asked: it is left out, and the refresh is forced.
    assert app.calls == [(["https://outlook.office.com/IMAP.AccessAsUser.All"], True)]
    stored = read_grant(tmp_path / "oauth.json", "x")
    assert stored.last_refresh is not None and stored.access_expires_at is not None
    expires = datetime.fromisoformat(stored.access_expires_at)
    assert timedelta(seconds=100) < expires - datetime.now(UTC) <= timedelta(seconds=121)


def test_delegated_grant_refused_is_one_line_with_the_code_and_the_command(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_grant(tmp_path / "oauth.json", grant())
    app = FakeMsalApp({"error": "invalid_grant", "error_codes": [50173],
                       "error_description": "AADSTS50173: The provided grant has expired due "
                                            "to it being revoked.\r\nTrace ID: 1"})
    with pytest.raises(AuthError) as err:
        delegated(tmp_path, app, monkeypatch).fetch()
    text = str(err.value)
    assert "\n" not in text and "RT-SECRET" not in text
    assert "AADSTS50173 (invalid_grant): the grant was revoked" in text
    assert text.endswith("run `maild auth login --mailbox support@contoso.com`")
    before = (tmp_path / "oauth.json").read_text()
    assert json.loads(before)["last_refresh"] is None  # a refusal writes nothing


def test_delegated_grant_without_an_account_or_for_another_app(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_grant(tmp_path / "oauth.json", grant())
    with pytest.raises(AuthError, match="holds no refresh token: run `maild auth login"):
        delegated(tmp_path, FakeMsalApp(None, accounts=0), monkeypatch).fetch()
    write_grant(tmp_path / "oauth.json", grant(client_id="other-app"))
    with pytest.raises(AuthError, match="was written for another app"):
        delegated(tmp_path, FakeMsalApp({"access_token": "x"}), monkeypatch).fetch()


def test_describe_and_scopes() -> None:
    assert describe({"error": "invalid_grant", "error_description": "AADSTS70008: The "
                     "refresh token has expired due to inactivity. Trace ID: 9"}) == \
        "AADSTS70008 (invalid_grant): the refresh token has expired"
    assert describe({"error": "invalid_request", "error_description": "AADSTS9000: odd\r\n"
                     "more"}) == "invalid_request: AADSTS9000: odd"
    assert msal_scopes(("a", "openid", "profile", "offline_access")) == ["a"]
    assert microsoft_user.login_command("s@x") == "maild auth login --mailbox s@x"


def config(tmp_path: Path, *tables: dict[str, Any]) -> Config:
    boxes = [{"address": f"support{i}@contoso.com", "imap_host": "imap.test",
              "auth": "oauth2", "oauth2": t} for i, t in enumerate(tables)]
    return parse_config({"mailbox": boxes}, tmp_path / "maild.toml")


MS_RT = {"flow": "refresh_token", "tenant": "contoso", "client_id": "app",
         "token_file": "oauth0.json"}
CC = {"flow": "client_credentials", "tenant": "contoso", "client_id": "app2",
      "client_secret_env": "S"}


def test_refresh_token_config_defaults_to_microsofts_delegated_scopes(tmp_path: Path) -> None:
    [mb] = config(tmp_path, MS_RT).mailboxes
    assert mb.oauth2 is not None and mb.oauth2.provider == "microsoft"
    assert mb.oauth2.scopes == ("https://outlook.office.com/IMAP.AccessAsUser.All",
                                "https://outlook.office.com/SMTP.Send", "offline_access")
    google = dict(flow="refresh_token", client_id="c", client_secret_env="G",
                  token_file="g.json")
    [mb] = config(tmp_path, google).mailboxes
    assert mb.oauth2 is not None and mb.oauth2.provider == "google"
    assert mb.oauth2.scopes == ("https://mail.google.com/",)


def test_pick_and_status(tmp_path: Path) -> None:
    cfg = config(tmp_path, MS_RT, CC, dict(MS_RT, token_file="oauth2.json"))
    with pytest.raises(ConfigError, match="--mailbox: give one of support0@contoso.com, "
                                          "support2@contoso.com"):
        pick(cfg, None)
    with pytest.raises(ConfigError, match="no .mailbox.oauth2. table with flow"):
        pick(cfg, "support1@contoso.com")
    assert pick(cfg, "SUPPORT2@contoso.com").address == "support2@contoso.com"
    rows = [status_of(cfg, t) for t in consent_tables(cfg)]
    assert [r["flow"] for r in rows] == ["refresh_token", "client_credentials", "refresh_token"]
    assert "does not exist: run `maild auth login --mailbox support0@contoso.com`" in \
        rows[0]["state"]
    assert rows[1]["state"].startswith("tokens in memory only")
    write_grant(tmp_path / "oauth2.json", grant().refreshed(-10))
    assert rows[2]["state"] != status_of(cfg, consent_tables(cfg)[2])["state"]
    row = status_of(cfg, consent_tables(cfg)[2])
    assert row["account"] == "ann@contoso.com" and row["state"].startswith("ok (the access")
    assert "RT-SECRET" not in json.dumps(row)
    write_grant(tmp_path / "oauth2.json", grant(client_id="other"))
    assert "written for another app" in status_of(cfg, consent_tables(cfg)[2])["state"]
    with pytest.raises(ConfigError, match="nothing to log in to"):
        pick(config(tmp_path, CC), None)


def write_pem(path: Path, *, key: bool = True, cert: bool = True) -> x509.Certificate:
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "maild")])
    now = datetime.now(UTC)
    c = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
         .public_key(k.public_key()).serial_number(1).not_valid_before(now)
         .not_valid_after(now + timedelta(days=1)).sign(k, hashes.SHA256()))
    text = b""
    if key:
        text += k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    if cert:
        text += c.public_bytes(serialization.Encoding.PEM)
    path.write_bytes(text)
    return c


def test_certificate_file_is_read_with_its_thumbprint(tmp_path: Path) -> None:
    cert = write_pem(tmp_path / "app.pem")
    cred = read_certificate(tmp_path / "app.pem")
    assert cred["thumbprint_sha256"] == cert.fingerprint(hashes.SHA256()).hex()
    assert set(msal_credential(cred)) == {"private_key", "public_certificate"}
    assert msal_credential("secret") == "secret"
    write_pem(tmp_path / "key-only.pem", cert=False)
    for name, message in (("key-only.pem", "must hold one private key and its certificate"),
                          ("missing.pem", "cannot read")):
        with pytest.raises(ConfigError, match=f"certificate_file: .*{message}"):
            read_certificate(tmp_path / name)
