"""Issue 14, first slice, unit level: the oauth2 config schema and presets, the token
cache (renewal before expiry, invalidate), the AADSTS one-liners, and the renew-once
retry of the IMAP and SMTP logins (with fakes)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiosmtplib
import imapclient
import pytest

from maild.auth.base import AccessToken, CachedTokenSource, xoauth2_string
from maild.auth.microsoft import describe_refusal
from maild.config import Config, parse_config, read_client_secret
from maild.errors import AuthError, ConfigError, MailboxError, SendError
from maild.mailbox import ImapSettings, MailboxClient
from maild.smtp import SmtpSettings, _login

OAUTH = {"flow": "client_credentials", "tenant": "contoso.onmicrosoft.com",
         "client_id": "11111111-2222", "client_secret_env": "MAILD_OAUTH_SECRET"}


def cfg(mailbox: dict[str, Any], smtp: dict[str, Any] | None = None) -> Config:
    data: dict[str, Any] = {"mailbox": mailbox}
    if smtp is not None:
        data["smtp"] = smtp
    return parse_config(data, Path("/etc/maild/maild.toml"))


def oauth_box(**extra: Any) -> dict[str, Any]:
    return {"address": "support@contoso.com", "provider": "microsoft", "auth": "oauth2",
            "oauth2": dict(OAUTH), **extra}


def test_microsoft_preset_fills_servers_scopes_and_username() -> None:
    mb = cfg(oauth_box()).mailboxes[0]
    assert (mb.imap_host, mb.imap_port, mb.security) == ("outlook.office365.com", 993, "tls")
    assert mb.username == "support@contoso.com"
    assert mb.oauth2 is not None
    assert mb.oauth2.scopes == ("https://outlook.office365.com/.default",)


def test_explicit_keys_win_over_the_preset() -> None:
    table = oauth_box(imap_host="imap.example.net", imap_port=143, security="starttls",
                      username="svc@contoso.com")
    table["oauth2"]["scopes"] = ["api://x/.default"]
    mb = cfg(table).mailboxes[0]
    assert (mb.imap_host, mb.imap_port, mb.security, mb.username) == \
        ("imap.example.net", 143, "starttls", "svc@contoso.com")
    assert mb.oauth2 is not None and mb.oauth2.scopes == ("api://x/.default",)


def test_smtp_reuses_the_mailbox_credentials_unless_given() -> None:
    c = cfg(oauth_box(), {"host": "smtp.office365.com", "auth": "oauth2"})
    assert c.smtp is not None and c.smtp.oauth2 == c.mailboxes[0].oauth2
    assert c.smtp.username == "support@contoso.com"
    own = dict(OAUTH, client_id="other-app")
    c = cfg(oauth_box(), {"host": "smtp.office365.com", "auth": "oauth2", "oauth2": own})
    assert c.smtp is not None and c.smtp.oauth2 is not None
    assert c.smtp.oauth2.client_id == "other-app"


@pytest.mark.parametrize(("change", "message"), [
    ({"provider": "yahoo"}, "mailbox.provider: must be one of microsoft, google"),
    ({"auth": "kerberos"}, "mailbox.auth: must be one of password, oauth2"),
    ({"oauth2": None}, "mailbox.oauth2: missing"),
    ({"oauth2": dict(OAUTH, flow="magic")}, "mailbox.oauth2.flow: must be one of"),
    ({"oauth2": dict(OAUTH, flow="refresh_token")}, "mailbox.oauth2.token_file: missing"),
    ({"oauth2": dict(OAUTH, flow="refresh_token", token_file="t.json")},
     "mailbox.oauth2.client_secret_env: not used by refresh_token with microsoft"),
    ({"oauth2": {"flow": "refresh_token", "token_file": "t.json", "client_id": "c",
                 "provider": "google"}}, "give exactly one of client_secret_env"),
    ({"oauth2": dict(OAUTH, provider="yahoo")}, "mailbox.oauth2.provider: must be one of"),
    ({"oauth2": dict(OAUTH, certificate_file="app.pem")}, "give exactly one of "
     "client_secret_env, client_secret_file, certificate_file"),
    ({"oauth2": {k: v for k, v in OAUTH.items() if k != "client_id"}},
     "mailbox.oauth2.client_id: missing"),
    ({"oauth2": {k: v for k, v in OAUTH.items() if k != "tenant"}},
     "mailbox.oauth2.tenant: missing"),
    ({"oauth2": dict(OAUTH, authority="http://login.example")},
     "mailbox.oauth2.authority: must be an https:// URL"),
    ({"oauth2": dict(OAUTH, client_secret_file="s.txt")}, "give exactly one of"),
    ({"oauth2": dict(OAUTH, tenat="x")}, "mailbox.oauth2.tenat: unknown key"),
    ({"oauth2": dict(OAUTH, client_secret="abc123")},
     "mailbox.oauth2.client_secret: secrets never go in the config file; "
     "use client_secret_env or client_secret_file"),
])
def test_oauth2_config_errors_name_the_key(change: dict[str, Any], message: str) -> None:
    table = {k: v for k, v in {**oauth_box(), **change}.items() if v is not None}
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")) as err:
        cfg(table)
    assert "abc123" not in str(err.value)


def test_oauth2_table_with_password_auth_is_an_error() -> None:
    table = {"address": "a@b.c", "imap_host": "h", "username": "u", "oauth2": dict(OAUTH)}
    with pytest.raises(ConfigError, match='mailbox.oauth2: given, but mailbox.auth is not'):
        cfg(table)


def test_smtp_oauth2_without_any_table_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"smtp.oauth2: missing"):
        cfg({"address": "a@b.c", "imap_host": "h", "username": "u"},
            {"host": "s", "auth": "oauth2"})


def test_client_secret_from_env_or_file(tmp_path: Path) -> None:
    c = cfg(oauth_box())
    o = c.mailboxes[0].oauth2
    assert o is not None
    assert read_client_secret(o, c, "mailbox.oauth2", {"MAILD_OAUTH_SECRET": "s"}) == "s"
    with pytest.raises(ConfigError, match="client_secret_env: variable MAILD_OAUTH_SECRET"):
        read_client_secret(o, c, "mailbox.oauth2", {})
    with pytest.raises(ConfigError, match="client_secret_env: variable MAILD_OAUTH_SECRET"):
        read_client_secret(o, c, "mailbox.oauth2", {"MAILD_OAUTH_SECRET": ""})  # empty


def test_password_and_client_secret_errors_name_the_key_never_the_value(tmp_path: Path
                                                                       ) -> None:
    from dataclasses import replace

    from maild.config import read_secret

    c = cfg(oauth_box())
    mb, o = c.mailboxes[0], c.mailboxes[0].oauth2
    assert o is not None
    secret = tmp_path / "secret"
    secret.write_text("hunter2\n")
    by_file = replace(o, client_secret_env=None, client_secret_file=str(secret))
    assert read_client_secret(by_file, c, "mailbox.oauth2", {}) == "hunter2"
    assert read_secret(replace(mb, password_file=str(secret)), c, "mailbox", {}) == "hunter2"
    assert read_secret(replace(mb, password_env="PW"), c, "mailbox", {"PW": "x"}) == "x"
    assert read_secret(mb, c, "mailbox", {}) is None
    with pytest.raises(ConfigError, match=r"^mailbox.password_env: variable PW is not set$"):
        read_secret(replace(mb, password_env="PW"), c, "mailbox", {})
    gone = str(tmp_path / "missing")
    with pytest.raises(ConfigError, match=r"^mailbox.oauth2.client_secret_file: cannot read"):
        read_client_secret(replace(o, client_secret_env=None, client_secret_file=gone), c,
                           "mailbox.oauth2", {})
    with pytest.raises(ConfigError, match=r"^mailbox.password_file: cannot read"):
        read_secret(replace(mb, password_file=gone), c, "mailbox", {})


class FakeGrant:
    def __init__(self, lifetime: float = 3600) -> None:
        self.lifetime, self.n, self.forgotten = lifetime, 0, 0

    def fetch(self) -> AccessToken:
        self.n += 1
        return AccessToken(f"tok{self.n}", self.lifetime)

    def forget(self) -> None:
        self.forgotten += 1


def test_token_is_cached_and_renewed_before_expiry() -> None:
    now = [0.0]
    grant = FakeGrant(3600)
    source = CachedTokenSource(grant, clock=lambda: now[0])
    assert source.token() == source.token() == "tok1"
    now[0] = 3600 - 301  # more than 5 minutes left: still the same token
    assert source.token() == "tok1"
    now[0] = 3600 - 299  # renewed 5 minutes before it expires
    assert source.token() == "tok2"


def test_short_lived_tokens_are_renewed_at_three_quarters_of_their_life() -> None:
    now = [0.0]
    source = CachedTokenSource(FakeGrant(8), clock=lambda: now[0])
    assert source.token() == "tok1"
    now[0] = 5.9
    assert source.token() == "tok1"
    now[0] = 6.0
    assert source.token() == "tok2"


def test_invalidate_forces_a_new_token_and_clears_the_library_cache() -> None:
    grant = FakeGrant()
    source = CachedTokenSource(grant)
    assert source.token() == "tok1"
    source.invalidate()
    assert source.token() == "tok2" and grant.forgotten == 1


def test_access_token_repr_hides_the_token() -> None:
    assert "sekret" not in repr(AccessToken("sekret", 10))


def test_refusal_is_one_line_with_the_aadsts_code_and_a_hint() -> None:
    result = {"error": "invalid_client", "error_codes": [7000215],
              "error_description": "AADSTS7000215: Invalid client secret provided.\r\n"
                                   "Trace ID: 1\r\nCorrelation ID: 2"}
    line = describe_refusal(result, "client_secret_env (S)", "hunter2")
    assert line.startswith("AADSTS7000215: invalid client secret — check client_secret_env (S)")
    assert "\n" not in line


def test_unknown_refusal_keeps_the_first_line_and_never_the_secret() -> None:
    result = {"error": "invalid_request",
              "error_description": "AADSTS9999: echoed hunter2 back Trace ID: 1\r\nmore"}
    line = describe_refusal(result, "x", "hunter2")
    assert line == "invalid_request: AADSTS9999: echoed *** back"


class Tokens:
    def __init__(self, fail_with: Exception | None = None) -> None:
        self.n, self.invalidated, self.fail_with = 0, 0, fail_with

    def token(self) -> str:
        if self.fail_with:
            raise self.fail_with
        self.n += 1
        return f"tok{self.n}"

    def invalidate(self) -> None:
        self.invalidated += 1

    def renew_at(self) -> float:
        return time.monotonic() + 100


class FakeImap:
    def __init__(self, accept: set[str], mechanisms: tuple[bytes, ...] = (b"XOAUTH2",)
                 ) -> None:
        self.accept, self.tried, self.mechanisms = accept, [], mechanisms
        self.bearer: list[tuple[str, str]] = []

    def __call__(self, *args: Any, **kw: Any) -> FakeImap:
        return self

    def capabilities(self) -> tuple[bytes, ...]:
        return (b"IMAP4REV1", *(b"AUTH=" + m for m in self.mechanisms))

    def oauthbearer_login(self, user: str, token: str) -> None:
        self.bearer.append((user, token))
        self.oauth2_login(user, token)

    def oauth2_login(self, user: str, token: str) -> None:
        self.tried.append(token)
        if token not in self.accept:
            raise imapclient.exceptions.LoginError("[AUTHENTICATIONFAILED] Authentication failed.")

    def logout(self) -> None:
        pass


def imap_settings(tokens: Tokens) -> ImapSettings:
    return ImapSettings("imap.test", 993, "tls", "support@contoso.com", "", None, 5.0,
                        token_source=tokens)


def test_imap_refused_token_is_renewed_once() -> None:
    tokens, server = Tokens(), FakeImap({"tok2"})
    client = MailboxClient(imap_settings(tokens), factory=server).connect()
    assert server.tried == ["tok1", "tok2"] and tokens.invalidated == 1
    left = client.seconds_until_renewal()
    assert left is not None and 99 < left <= 100  # the session knows when to log in afresh
    client.close()


def test_imap_uses_oauthbearer_when_the_server_offers_only_that() -> None:
    tokens, server = Tokens(), FakeImap({"tok2"}, mechanisms=(b"OAUTHBEARER",))
    MailboxClient(imap_settings(tokens), factory=server).connect().close()
    assert server.bearer == [("support@contoso.com", "tok1"), ("support@contoso.com", "tok2")]
    both = FakeImap({"tok1"}, mechanisms=(b"OAUTHBEARER", b"XOAUTH2"))
    MailboxClient(imap_settings(Tokens()), factory=both).connect().close()
    assert both.bearer == [] and both.tried == ["tok1"]


def test_imap_gives_up_after_one_renewal_with_one_line() -> None:
    tokens, server = Tokens(), FakeImap(set())
    with pytest.raises(MailboxError) as err:
        MailboxClient(imap_settings(tokens), factory=server).connect()
    assert server.tried == ["tok1", "tok2"]
    assert "login with an OAuth2 token (renewed once) failed for support@contoso.com" in \
        str(err.value) and "tok1" not in str(err.value) and "tok2" not in str(err.value)


def test_imap_token_refusal_becomes_a_mailbox_error() -> None:
    tokens = Tokens(AuthError("token request refused: AADSTS7000215: invalid client secret"))
    with pytest.raises(MailboxError, match="IMAP imap.test:993: token request refused: AADSTS"):
        MailboxClient(imap_settings(tokens), factory=FakeImap(set())).connect()


class FakeSmtp:
    def __init__(self, accept: set[str]) -> None:
        self.accept, self.tried = accept, []

    async def auth_xoauth2(self, user: str, token: str) -> None:
        self.tried.append(token)
        if token not in self.accept:
            raise aiosmtplib.SMTPAuthenticationError(535, "5.7.8 Authentication failed")


def test_smtp_refused_token_is_renewed_once_then_a_temporary_failure() -> None:
    tokens = Tokens()
    s = SmtpSettings("smtp.test", 587, "starttls", "support@contoso.com", token_source=tokens)
    ok = FakeSmtp({"tok2"})
    asyncio.run(_login(ok, s))  # type: ignore[arg-type]
    assert ok.tried == ["tok1", "tok2"] and tokens.invalidated == 1
    never = FakeSmtp(set())
    with pytest.raises(SendError, match="renewed once") as err:
        asyncio.run(_login(never, s))  # type: ignore[arg-type]
    assert not err.value.permanent


def test_xoauth2_string() -> None:
    assert xoauth2_string("a@b.c", "T") == "user=a@b.c\x01auth=Bearer T\x01\x01"


def test_google_preset_and_service_account_table() -> None:
    table = {"address": "support@example.com", "provider": "google", "auth": "oauth2",
             "oauth2": {"flow": "service_account", "service_account_file": "sa.json"}}
    mb = cfg(table).mailboxes[0]
    assert (mb.imap_host, mb.imap_port, mb.security) == ("imap.gmail.com", 993, "tls")
    assert mb.oauth2 is not None and mb.oauth2.scopes == ("https://mail.google.com/",)
    del table["oauth2"]["service_account_file"]  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="mailbox.oauth2.service_account_file: missing"):
        cfg(table)


def test_google_refusals_are_one_line_with_a_hint() -> None:
    from google.auth.exceptions import RefreshError

    from maild.auth.google import describe_refusal as google_refusal

    exc = RefreshError("unauthorized_client: ...", {
        "error": "unauthorized_client",
        "error_description": "Client is unauthorized to retrieve access tokens using this "
                             "method, or client not authorized for any of the scopes requested."})
    assert google_refusal(exc).startswith("unauthorized_client: domain-wide delegation is not")
    exc = RefreshError("x", {"error": "invalid_grant", "error_description": "Bad\nthing"})
    assert google_refusal(exc) == "invalid_grant: Bad"


def test_the_mailbox_provider_presets_smtp_too_and_explicit_keys_win() -> None:
    c = cfg(oauth_box(), {"auth": "oauth2"})
    assert c.smtp is not None
    assert (c.smtp.host, c.smtp.port, c.smtp.security) == ("smtp.office365.com", 587, "starttls")
    c = cfg(oauth_box(), {"auth": "oauth2", "host": "relay.contoso.com", "port": 25})
    assert c.smtp is not None and (c.smtp.host, c.smtp.port) == ("relay.contoso.com", 25)
