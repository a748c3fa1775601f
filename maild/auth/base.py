"""The token-source protocol, its in-memory cache, and the SASL XOAUTH2 string.

A flow only has to fetch a fresh token (`Grant.fetch`); `CachedTokenSource` hands it
out until shortly before it expires and drops it on `invalidate()` (after the server
refused it). Tokens live in memory only. No I/O besides the injected fetch and clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

# Renew this long before expiry (capped at a quarter of the token's lifetime, so very
# short-lived test tokens are still used for most of their life).
RENEW_BEFORE_SECONDS = 300.0


class TokenSource(Protocol):
    """Where a login gets its OAuth2 access token."""

    def token(self) -> str:
        """A token valid for a while yet; fetches a new one when needed."""
        ...

    def invalidate(self) -> None:
        """Forget the cached token: the server refused it; the next `token()` renews."""
        ...

    def renew_at(self) -> float:
        """`time.monotonic()` value after which the last token handed out is due for
        renewal: a long IMAP session logs in afresh by then."""
        ...


@dataclass(frozen=True)
class AccessToken:
    value: str
    expires_in: float  # seconds from the moment it was fetched

    def __repr__(self) -> str:  # never print the token itself
        return f"AccessToken(expires_in={self.expires_in})"


class Grant(Protocol):
    def fetch(self) -> AccessToken:
        """Ask the identity provider for a new token; `AuthError` if it refuses."""
        ...


class CachedTokenSource:
    """A `TokenSource` over a `Grant`: cached, renewed before expiry, thread-safe."""

    def __init__(self, grant: Grant, clock: Callable[[], float] = time.monotonic) -> None:
        self._grant = grant
        self._clock = clock
        self._lock = threading.Lock()
        self._value: str | None = None
        self._renew_at = 0.0
        self.fetches = 0

    def token(self) -> str:
        with self._lock:
            now = self._clock()
            if self._value is None or now >= self._renew_at:
                fresh = self._grant.fetch()
                self.fetches += 1
                margin = min(RENEW_BEFORE_SECONDS, fresh.expires_in / 4)
                self._value, self._renew_at = fresh.value, now + fresh.expires_in - margin
            return self._value

    def renew_at(self) -> float:
        with self._lock:
            return self._renew_at

    def invalidate(self) -> None:
        with self._lock:
            self._value = None
            if hasattr(self._grant, "forget"):
                self._grant.forget()


def xoauth2_string(username: str, token: str) -> str:
    """The SASL XOAUTH2 initial response (before base64), as Google and Microsoft define it."""
    return f"user={username}\x01auth=Bearer {token}\x01\x01"
