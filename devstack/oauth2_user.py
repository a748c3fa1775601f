"""The stand-in's user-consent grants: RFC 8628 device code (Microsoft), authorization code
with PKCE and a loopback redirect (Google), and refresh tokens with rotation and revocation.

``UserGrants`` keeps the state (public clients, device codes, authorization codes, refresh
tokens) and answers with (status, JSON) pairs or a redirect URL; ``devstack.oauth2`` routes
HTTP requests to it and mints the access tokens. Tests play the person: they approve a device
code (``approve``, or ``GET /devicelogin?user_code=…&login=…``) or GET the authorization URL
(``&login=`` picks the account) so the stand-in redirects to the loopback port.

Knobs: ``rotate`` (a new refresh token on every refresh; the old one then stops working),
``revoke(user)`` (every refresh token of that user is refused with invalid_grant),
``auto_approve_as`` (device codes approved by that user as soon as they are issued).
It must not talk to any real provider; it never logs a secret, code or token.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import jwt

DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"
Reply = tuple[int, dict[str, Any]]
# (client_id, user, scope, lifetime) -> access token
Mint = Callable[[str, str, str, int], str]
ErrorFn = Callable[[str, int, str], dict[str, Any]]


@dataclass(frozen=True)
class PublicClient:
    client_id: str
    secret: str | None  # Google installed apps have one; Microsoft public clients none


@dataclass
class DeviceCode:
    client_id: str
    user_code: str
    scope: str
    expires_at: float
    user: str | None = None
    declined: bool = False


@dataclass(frozen=True)
class AuthCode:
    client_id: str
    redirect_uri: str
    challenge: str
    scope: str
    user: str
    expires_at: float


@dataclass(frozen=True)
class RefreshRecord:
    client_id: str
    user: str
    scope: str
    revoked: bool = False


@dataclass
class UserGrants:
    mint: Mint
    lifetime: Callable[[], int]
    rotate: bool = True
    auto_approve_as: str | None = None
    clients: dict[str, PublicClient] = field(default_factory=dict)
    devices: dict[str, DeviceCode] = field(default_factory=dict)
    codes: dict[str, AuthCode] = field(default_factory=dict)
    refresh_tokens: dict[str, RefreshRecord] = field(default_factory=dict)
    refreshes: int = 0
    issued_refresh_tokens: list[str] = field(default_factory=list)  # for log greps
    lock: threading.Lock = field(default_factory=threading.Lock)

    # ------------------------------------------------------------ test controls

    def add_client(self, client_id: str, secret: str | None = None) -> None:
        with self.lock:
            self.clients[client_id] = PublicClient(client_id, secret)

    def approve(self, user_code: str, user: str, *, decline: bool = False) -> bool:
        with self.lock:
            for device in self.devices.values():
                if device.user_code == user_code and device.expires_at > time.time():
                    device.user, device.declined = user.lower(), decline
                    return True
        return False

    def revoke(self, user: str | None = None) -> int:
        """Revoke the refresh tokens of `user` (all users with None); how many."""
        with self.lock:
            hits = [rt for rt, r in self.refresh_tokens.items()
                    if user is None or r.user == user.lower()]
            for rt in hits:
                self.refresh_tokens[rt] = replace(self.refresh_tokens[rt], revoked=True)
        return len(hits)

    def live_refresh_tokens(self, user: str) -> int:
        with self.lock:
            return sum(1 for r in self.refresh_tokens.values()
                       if r.user == user.lower() and not r.revoked)

    # ------------------------------------------------------------ RFC 8628

    def device_authorization(self, form: dict[str, str], verification_uri: str,
                             error: ErrorFn) -> Reply:
        client_id = form.get("client_id", "")
        with self.lock:
            known = client_id in self.clients
        if not known:
            return 400, error("unauthorized_client", 700016,
                              f"Application with identifier '{client_id}' was not found.")
        device_code = secrets.token_urlsafe(32)
        user_code = "-".join(secrets.token_hex(2).upper() for _ in range(2))
        device = DeviceCode(client_id, user_code, form.get("scope", ""), time.time() + 300,
                            user=self.auto_approve_as)
        with self.lock:
            self.devices[device_code] = device
        return 200, {"device_code": device_code, "user_code": user_code,
                     "verification_uri": verification_uri, "expires_in": 300, "interval": 1,
                     "message": f"To sign in, use a web browser to open the page "
                                f"{verification_uri} and enter the code {user_code} to "
                                "authenticate."}

    def device_token(self, form: dict[str, str], error: ErrorFn) -> Reply:
        with self.lock:
            device = self.devices.get(form.get("device_code", ""))
        if device is None or device.client_id != form.get("client_id"):
            return 400, error("invalid_grant", 70000, "The provided value for the input "
                              "parameter 'device_code' is not valid.")
        if device.expires_at < time.time():
            return 400, error("expired_token", 70020, "The provided device code expired.")
        if device.declined:
            return 400, error("authorization_declined", 70019, "The end user declined.")
        if device.user is None:
            return 400, error("authorization_pending", 70016, "OAuth 2.0 device flow error. "
                              "Authorization is pending. Continue polling.")
        with self.lock:
            self.devices.pop(form["device_code"], None)
        return 200, self._tokens(device.client_id, device.user, device.scope, new_rt=True)

    # ------------------------------------------------------------ auth code + PKCE

    def authorize(self, query: dict[str, str]) -> tuple[int, str]:
        """(302, where to) for a consent; (400, why) when the request itself is bad."""
        client_id, redirect = query.get("client_id", ""), query.get("redirect_uri", "")
        host = urllib.parse.urlsplit(redirect).hostname
        with self.lock:
            known = client_id in self.clients
        if not known:
            return 400, "invalid_client"
        if not redirect.startswith("http://") or host not in ("localhost", "127.0.0.1"):
            return 400, "redirect_uri_mismatch"  # installed apps: loopback only
        if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            return 400, "invalid_request: PKCE S256 required"
        state = query.get("state", "")
        user = (query.get("login") or query.get("login_hint") or "").lower()
        if query.get("deny") or not user:
            args = {"error": "access_denied", "state": state}
        else:
            code = secrets.token_urlsafe(24)
            with self.lock:
                self.codes[code] = AuthCode(client_id, redirect, query["code_challenge"],
                                            query.get("scope", ""), user, time.time() + 120)
            args = {"code": code, "state": state, "scope": query.get("scope", "")}
        return 302, f"{redirect}{'&' if '?' in redirect else '?'}{urllib.parse.urlencode(args)}"

    def code_token(self, form: dict[str, str]) -> Reply:
        bad = self._client_secret_error(form)
        if bad:
            return bad
        with self.lock:
            code = self.codes.pop(form.get("code", ""), None)
        verifier = form.get("code_verifier", "")
        digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        if code is None or code.expires_at < time.time() \
                or code.client_id != form.get("client_id") \
                or code.redirect_uri != form.get("redirect_uri"):
            return 400, {"error": "invalid_grant", "error_description": "Bad Request"}
        if digest.rstrip(b"=").decode() != code.challenge:
            return 400, {"error": "invalid_grant", "error_description": "Invalid code verifier."}
        return 200, self._tokens(code.client_id, code.user, code.scope, new_rt=True,
                                 microsoft=False)

    # ------------------------------------------------------------ refresh tokens

    def refresh(self, form: dict[str, str], error: ErrorFn | None) -> Reply:
        """grant_type=refresh_token; Microsoft-style errors with `error`, Google's without."""
        if error is None:
            bad = self._client_secret_error(form)
            if bad:
                return bad
        rt = form.get("refresh_token", "")
        with self.lock:
            record = self.refresh_tokens.get(rt)
        if record is None or record.revoked or record.client_id != form.get("client_id"):
            revoked = record is not None and record.revoked
            if error is None:
                return 400, {"error": "invalid_grant",
                             "error_description": "Token has been expired or revoked."}
            if revoked:
                return 400, error("invalid_grant", 50173, "The provided grant has expired "
                                  "due to it being revoked, a fresh auth token is needed.")
            return 400, error("invalid_grant", 70008, "The provided authorization code or "
                              "refresh token has expired due to inactivity.")
        with self.lock:
            self.refreshes += 1
            if self.rotate:
                self.refresh_tokens.pop(rt, None)
        return 200, self._tokens(record.client_id, record.user, record.scope,
                                 new_rt=self.rotate, microsoft=error is not None)

    # ------------------------------------------------------------ helpers

    def _client_secret_error(self, form: dict[str, str]) -> Reply | None:
        with self.lock:
            client = self.clients.get(form.get("client_id", ""))
        if client is None or client.secret != form.get("client_secret"):
            return 401, {"error": "invalid_client", "error_description": "Unauthorized"}
        return None

    def _tokens(self, client_id: str, user: str, scope: str, *, new_rt: bool,
                microsoft: bool = True) -> dict[str, Any]:
        lifetime = self.lifetime()
        body: dict[str, Any] = {"token_type": "Bearer", "expires_in": lifetime, "scope": scope,
                                "access_token": self.mint(client_id, user, scope, lifetime)}
        if new_rt:
            rt = secrets.token_urlsafe(40)
            with self.lock:
                self.refresh_tokens[rt] = RefreshRecord(client_id, user, scope)
                self.issued_refresh_tokens.append(rt)
            body["refresh_token"] = rt
        if microsoft:  # msal builds its account from client_info and the id_token
            oid = hashlib.sha256(user.encode()).hexdigest()[:32]
            tid = "00000000-0000-0000-0000-00000000c0de"
            info = {"uid": oid, "utid": tid}
            body["client_info"] = base64.urlsafe_b64encode(
                json.dumps(info).encode()).decode().rstrip("=")
            now = int(time.time())
            body["id_token"] = jwt.encode(
                {"aud": client_id, "iss": f"https://login.example/{tid}/v2.0", "sub": oid,
                 "oid": oid, "tid": tid, "preferred_username": user, "iat": now,
                 "exp": now + 3600}, "the stand-in id_token key (msal does not verify it)",
                algorithm="HS256")
        return body
