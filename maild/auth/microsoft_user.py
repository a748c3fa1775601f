"""Microsoft delegated access with msal: a person's consent by the device-code flow, then
refresh tokens kept in `token_file` and renewed with msal.

`device_login` is `maild auth login` for Microsoft (RFC 8628: the person opens the
verification page anywhere and types the code; nothing listens on this machine).
`DelegatedGrant` is the daemon's `Grant`: it loads msal's token cache from the token file,
asks msal for a new access token with the refresh token (msal keeps a rotated refresh token
in its cache) and writes the cache back. A shared mailbox works with the token of a user who
has FullAccess on it: that user logs in, maild logs in to the shared mailbox's address.
A refused refresh token is one `AuthError` line with the AADSTS code and the command to
run; tokens and the cache never appear in it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import msal
import requests

from maild.auth.base import AccessToken
from maild.auth.microsoft import AADSTS_RE, authority_url
from maild.auth.tokenfile import StoredGrant, locked, now_iso, read_grant, write_grant
from maild.errors import AuthError

# msal adds these itself and refuses them when asked for explicitly.
RESERVED_SCOPES = frozenset({"offline_access", "openid", "profile"})

# The codes met when a refresh token stops working: all are fixed by logging in again.
REFRESH_HINTS = {
    "70008": "the refresh token has expired",
    "700082": "the refresh token expired after 90 days without use",
    "50173": "the grant was revoked (password changed or sessions revoked)",
    "50078": "multi-factor authentication is now required",
    "50076": "multi-factor authentication is now required",
    "65001": "consent was withdrawn",
    "50020": "the account is not in this tenant",
    "7000218": "the app registration does not allow public client flows — turn on 'Allow "
               "public client flows' under Authentication",
}


def msal_scopes(scopes: tuple[str, ...]) -> list[str]:
    return [s for s in scopes if s not in RESERVED_SCOPES]


def login_command(mailbox: str) -> str:
    return f"maild auth login --mailbox {mailbox}"


def describe(result: dict[str, Any]) -> str:
    """`AADSTS<code>: <what it means>` (or the OAuth2 error and its first line)."""
    description = str(result.get("error_description") or "")
    codes = [str(c) for c in result.get("error_codes") or []]
    found = AADSTS_RE.search(description)
    code = codes[0] if codes else (found.group(1) if found else None)
    error = str(result.get("error") or "refused")
    if code and code in REFRESH_HINTS:
        return f"AADSTS{code} ({error}): {REFRESH_HINTS[code]}"
    first = description.splitlines()[0].split(" Trace ID:")[0].strip() if description else ""
    return f"{error}: {first}" if first else error


class PublicClient:
    """An msal public client application over one token cache, `ca_file` honoured."""

    def __init__(self, *, client_id: str, tenant: str | None, authority: str | None,
                 ca_file: str | None, timeout: float = 30.0) -> None:
        self.authority = authority_url(tenant, authority)
        self.client_id = client_id
        self._ca_file = ca_file
        self._timeout = timeout

    def application(self, cache: msal.SerializableTokenCache) -> msal.PublicClientApplication:
        session = requests.Session()
        session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
        session.verify = self._ca_file or True
        return msal.PublicClientApplication(
            self.client_id, authority=self.authority, token_cache=cache,
            instance_discovery=False, http_client=session, timeout=self._timeout)


def device_login(client: PublicClient, scopes: tuple[str, ...], mailbox: str,
                 say: Callable[[str], None]) -> StoredGrant:
    """RFC 8628 device-code consent; the grant to store. `say` shows the person the code."""
    cache = msal.SerializableTokenCache()
    try:
        app = client.application(cache)
        flow = app.initiate_device_flow(scopes=msal_scopes(scopes))
    except (requests.RequestException, ValueError, OSError) as exc:
        raise AuthError(f"cannot start the device-code login at {client.authority}: "
                        f"{type(exc).__name__}") from None
    if "user_code" not in flow:
        raise AuthError(f"device-code login refused by {client.authority}: {describe(flow)}")
    say(str(flow.get("message") or f"Open {flow.get('verification_uri')} and enter the "
                                    f"code {flow['user_code']}"))
    try:
        result = app.acquire_token_by_device_flow(flow)
    except (requests.RequestException, OSError) as exc:
        raise AuthError(f"device-code login at {client.authority} failed: "
                        f"{type(exc).__name__}") from None
    if "access_token" not in result:
        raise AuthError(f"device-code login for {mailbox} refused by {client.authority}: "
                        f"{describe(result)}")
    accounts = app.get_accounts()
    claims = result.get("id_token_claims") or {}
    account = str(claims.get("preferred_username") or
                  (accounts[0].get("username") if accounts else "") or mailbox)
    grant = StoredGrant(provider="microsoft", client_id=client.client_id, account=account,
                        scopes=scopes, msal_cache=cache.serialize(), logged_in_at=now_iso())
    return grant.refreshed(float(result.get("expires_in", 3600)))


class DelegatedGrant:
    """`Grant` that renews a person's Microsoft access token from the token file."""

    def __init__(self, *, client: PublicClient, scopes: tuple[str, ...], token_file: Path,
                 mailbox: str) -> None:
        self._client = client
        self._scopes = scopes
        self._path = token_file
        self._mailbox = mailbox

    def __repr__(self) -> str:
        return f"DelegatedGrant(authority={self._client.authority!r}, file={self._path})"

    def fetch(self) -> AccessToken:
        hint = login_command(self._mailbox)
        with locked(self._path):
            stored = read_grant(self._path, hint)
            if stored.provider != "microsoft" or stored.client_id != self._client.client_id:
                raise AuthError(f"token_file {self._path} was written for another app "
                                f"({stored.provider}): run `{hint}`")
            cache = msal.SerializableTokenCache()
            cache.deserialize(stored.msal_cache or "{}")
            try:
                app = self._client.application(cache)
                accounts = app.get_accounts()
                result = app.acquire_token_silent_with_error(
                    msal_scopes(self._scopes), accounts[0], force_refresh=True) \
                    if accounts else None
            except (requests.RequestException, ValueError, OSError) as exc:
                raise AuthError(f"cannot renew the token at {self._client.authority}: "
                                f"{type(exc).__name__}") from None
            if result is None:
                raise AuthError(f"token_file {self._path} holds no refresh token: run `{hint}`")
            if "access_token" not in result:
                raise AuthError(f"refresh token for {stored.account} refused by "
                                f"{self._client.authority}: {describe(result)} — run `{hint}`")
            expires_in = float(result.get("expires_in", 3600))
            write_grant(self._path, stored.refreshed(expires_in, msal_cache=cache.serialize()))
        return AccessToken(str(result["access_token"]), expires_in)
