"""Google Workspace tokens with google-auth: a service account with domain-wide delegation.

The service account signs an RFC 7523 JWT assertion whose subject is the mailbox, and
trades it at the token endpoint (`token_uri` from the key file, or `token_url`) for an
access token with the `https://mail.google.com/` scope. requests' environment is ignored
so `ca_file` means what it says. A refused grant becomes one `AuthError` line with the
OAuth2 error and a hint; the key and tokens never appear in it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from google.auth.exceptions import GoogleAuthError, RefreshError, TransportError
from google.auth.transport.requests import Request
from google.oauth2 import service_account

from maild.auth.base import AccessToken
from maild.errors import AuthError

# (error, a phrase of its description) -> what to do. Google's descriptions are stable text.
HINTS = (
    ("unauthorized_client", "", "domain-wide delegation is not granted — in the Admin console "
     "(Security > API controls > Domain-wide delegation) allow this service account's client "
     "id the scope https://mail.google.com/"),
    ("invalid_grant", "Invalid email or User ID", "the mailbox is not a user of the Workspace "
     "domain — check the mailbox address"),
    ("invalid_grant", "Invalid JWT Signature", "the key in service_account_file was deleted or "
     "is not this service account's — create a new key"),
    ("invalid_scope", "", "check scopes (Gmail needs https://mail.google.com/)"),
)


def describe_refusal(exc: RefreshError) -> str:
    data = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], dict) else {}
    error = str(data.get("error") or "refused")
    description = str(data.get("error_description") or "").splitlines()[0:1]
    text = description[0] if description else ""
    for code, phrase, hint in HINTS:
        if error == code and phrase in text:
            return f"{error}: {hint}"
    return f"{error}: {text}" if text else error


class ServiceAccountGrant:
    """`Grant` for a Google service account acting as `subject` (the mailbox)."""

    def __init__(self, *, key_file: Path, subject: str, scopes: tuple[str, ...],
                 token_url: str | None = None, ca_file: str | None = None) -> None:
        self._key_file = key_file
        self._subject = subject
        self._scopes = list(scopes)
        self._token_url = token_url
        self._ca_file = ca_file

    def __repr__(self) -> str:
        return f"ServiceAccountGrant(subject={self._subject!r})"

    def _credentials(self) -> service_account.Credentials:
        try:
            info: dict[str, Any] = json.loads(self._key_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise AuthError(f"service_account_file: cannot read {self._key_file}: "
                            f"{getattr(exc, 'strerror', None) or 'not JSON'}") from None
        if self._token_url:
            info["token_uri"] = self._token_url
        try:
            return service_account.Credentials.from_service_account_info(
                info, scopes=self._scopes, subject=self._subject)
        except (ValueError, KeyError, GoogleAuthError):
            raise AuthError(f"service_account_file: {self._key_file} is not a service "
                            "account key (create a JSON key for the service account)") from None

    def fetch(self) -> AccessToken:
        creds = self._credentials()
        session = requests.Session()
        session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
        session.verify = self._ca_file or True
        try:
            creds.refresh(Request(session=session))
        except RefreshError as exc:
            raise AuthError(f"token request to {creds._token_uri} refused for "
                            f"{self._subject}: {describe_refusal(exc)}") from None
        except (TransportError, requests.RequestException, OSError) as exc:
            raise AuthError(f"cannot get a token from {creds._token_uri}: "
                            f"{type(exc).__name__}") from None
        expiry = creds.expiry.replace(tzinfo=UTC) if creds.expiry else None
        seconds = (expiry - datetime.now(UTC)).total_seconds() if expiry else 3600.0
        return AccessToken(str(creds.token), max(seconds, 1.0))
