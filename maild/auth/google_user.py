"""Google user consent: the installed-app flow (google-auth-oauthlib), then refresh tokens
kept in `token_file` and renewed with google-auth.

`installed_app_login` is `maild auth login` for Google: authorization code with PKCE and a
loopback redirect (`http://localhost:PORT/`), the only installed-app flow Google allows for
Gmail scopes (its device flow refuses them and the copy-paste flow is blocked). On a headless
server the person's browser reaches the loopback port through an SSH tunnel (`--port`).
`UserGrant` is the daemon's `Grant`: refresh grant at the token endpoint; a rotated refresh
token is written back. A refused grant is one `AuthError` line with Google's error code and
the command to run; the client secret, tokens and codes never appear in it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from google.auth import jwt as google_jwt
from google.auth.exceptions import GoogleAuthError, RefreshError, TransportError
from google.auth.transport.requests import Request
from google.oauth2.credentials import Credentials

from maild.auth.base import AccessToken
from maild.auth.microsoft_user import login_command
from maild.auth.tokenfile import StoredGrant, locked, now_iso, read_grant, write_grant
from maild.errors import AuthError

GOOGLE_AUTH_URL = "https://accounts.google.com/o/oauth2/auth"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
PROMPT = ("Open this URL in a browser and sign in as {mailbox} (on a headless server: "
          "ssh -L {port}:localhost:{port} to this machine first):\n{{url}}")
DONE = "maild has the consent; you can close this window."


def _session(ca_file: str | None) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
    session.verify = ca_file or True
    return session


def _expires_in(expiry: datetime | None) -> float:
    if expiry is None:
        return 3600.0
    return max((expiry.replace(tzinfo=UTC) - datetime.now(UTC)).total_seconds(), 1.0)


def _email_of(id_token: Any) -> str | None:
    """The `email` claim of an id_token, if one came (informational; not verified)."""
    if not isinstance(id_token, str):
        return None
    try:
        email = google_jwt.decode(id_token, verify=False).get("email")
    except (ValueError, GoogleAuthError):
        return None
    return str(email) if email else None


def installed_app_login(*, client_id: str, client_secret: str, scopes: tuple[str, ...],
                        mailbox: str, auth_url: str | None, token_url: str | None,
                        ca_file: str | None, port: int, timeout: float,
                        say: Callable[[str], None]) -> StoredGrant:
    """Authorization code + PKCE (S256) + loopback redirect; the grant to store."""
    from google_auth_oauthlib.flow import InstalledAppFlow, WSGITimeoutError
    from oauthlib.oauth2.rfc6749.errors import OAuth2Error

    config = {"installed": {"client_id": client_id, "client_secret": client_secret,
                            "auth_uri": auth_url or GOOGLE_AUTH_URL,
                            "token_uri": token_url or GOOGLE_TOKEN_URL,
                            "redirect_uris": ["http://localhost"]}}
    flow = InstalledAppFlow.from_client_config(config, list(scopes),
                                               autogenerate_code_verifier=True)
    flow.oauth2session.trust_env = False
    flow.oauth2session.verify = ca_file or True
    # Its redirect server logs each request line, and that line holds the authorization code.
    logging.getLogger("google_auth_oauthlib.flow").setLevel(logging.WARNING)
    try:
        creds = flow.run_local_server(
            host="localhost", port=port, open_browser=False,
            authorization_prompt_message=PROMPT.format(mailbox=mailbox, port=port or "PORT"),
            success_message=DONE, timeout_seconds=int(timeout), login_hint=mailbox,
            prompt="consent")
    except WSGITimeoutError:
        raise AuthError(f"no answer at the loopback redirect within {int(timeout)} s: "
                        "nothing was stored") from None
    except OAuth2Error as exc:
        raise AuthError(f"Google login for {mailbox} refused: {exc.error}"
                        f"{': ' + exc.description if exc.description else ''}") from None
    except (requests.RequestException, OSError) as exc:
        raise AuthError(f"Google login for {mailbox} failed: {type(exc).__name__}") from None
    if not creds.refresh_token:
        raise AuthError("Google sent no refresh token (the consent screen must ask for "
                        "offline access): nothing was stored")
    account = _email_of(getattr(creds, "id_token", None)) or mailbox
    grant = StoredGrant(provider="google", client_id=client_id, account=account,
                        scopes=scopes, refresh_token=str(creds.refresh_token),
                        logged_in_at=now_iso())
    return grant.refreshed(_expires_in(creds.expiry))


def describe_refusal(exc: RefreshError) -> str:
    data = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], dict) else {}
    error = str(data.get("error") or "refused")
    text = str(data.get("error_description") or "").split("\n")[0].strip()
    return f"{error}: {text}" if text else error


class UserGrant:
    """`Grant` that renews a person's Google access token from the token file."""

    def __init__(self, *, client_id: str, secret: Callable[[], str], scopes: tuple[str, ...],
                 token_file: Path, mailbox: str, token_url: str | None,
                 ca_file: str | None) -> None:
        self._client_id = client_id
        self._secret = secret
        self._scopes = scopes
        self._path = token_file
        self._mailbox = mailbox
        self._token_url = token_url or GOOGLE_TOKEN_URL
        self._ca_file = ca_file

    def __repr__(self) -> str:
        return f"UserGrant(token_url={self._token_url!r}, file={self._path})"

    def fetch(self) -> AccessToken:
        hint = login_command(self._mailbox)
        secret = self._secret()
        with locked(self._path):
            stored = read_grant(self._path, hint)
            if stored.provider != "google" or stored.client_id != self._client_id \
                    or not stored.refresh_token:
                raise AuthError(f"token_file {self._path} was not written for this Google "
                                f"client: run `{hint}`")
            creds = Credentials(None, refresh_token=stored.refresh_token,
                                token_uri=self._token_url, client_id=self._client_id,
                                client_secret=secret, scopes=list(self._scopes))
            try:
                creds.refresh(Request(session=_session(self._ca_file)))
            except RefreshError as exc:
                raise AuthError(f"refresh token for {stored.account} refused by "
                                f"{self._token_url}: {describe_refusal(exc)} — run "
                                f"`{hint}`") from None
            except (TransportError, GoogleAuthError, requests.RequestException,
                    OSError) as exc:
                raise AuthError(f"cannot renew the token at {self._token_url}: "
                                f"{type(exc).__name__}") from None
            expires_in = _expires_in(creds.expiry)
            write_grant(self._path, stored.refreshed(
                expires_in, refresh_token=str(creds.refresh_token or stored.refresh_token)))
        return AccessToken(str(creds.token), expires_in)
