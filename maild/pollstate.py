"""What each mailbox's poller last did, kept in memory for /healthz and /metrics.

The poller thread writes a `MailboxState` (a cycle or batch went through, an
attempt failed, a login was refused, another instance holds the mailbox); the
HTTP thread reads it. Plain values behind a lock: no I/O, no database, no
decisions about health (those are in `maild.health`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

AUTH_FAILURES_UNHEALTHY = 3  # refused logins in a row before the mailbox is reported unhealthy


@dataclass
class MailboxSnapshot:
    address: str
    interval: float
    started: float
    last_ok: float | None
    failures: int
    auth_failures: int
    last_error: str | None
    standby: bool


@dataclass
class MailboxState:
    """One mailbox's poller as seen from outside; times are wall-clock epoch seconds."""

    address: str
    interval: float  # seconds between cycles when nothing happens
    started: float = field(default_factory=time.time)
    _last_ok: float | None = None
    _failures: int = 0
    _auth_failures: int = 0
    _last_error: str | None = None
    _standby: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def succeeded(self) -> None:
        """A cycle (or a committed batch of a long one) went through."""
        with self._lock:
            self._last_ok = time.time()
            self._failures = self._auth_failures = 0
            self._last_error, self._standby = None, False

    def failed(self, error: str, *, auth: bool = False) -> int:
        """An attempt failed; returns the refused logins in a row (0 if not a login)."""
        with self._lock:
            self._failures += 1
            self._auth_failures = self._auth_failures + 1 if auth else 0
            self._last_error = error
            return self._auth_failures

    def standing_by(self, standby: bool) -> bool:
        """Record whether another instance holds the mailbox; True if that changed."""
        with self._lock:
            changed = standby != self._standby
            self._standby = standby
            if standby:
                self._last_error = None
            return changed

    def snapshot(self) -> MailboxSnapshot:
        with self._lock:
            return MailboxSnapshot(self.address, self.interval, self.started, self._last_ok,
                                   self._failures, self._auth_failures, self._last_error,
                                   self._standby)


@dataclass
class PollStates:
    """Every mailbox's state, created once per address."""

    _states: dict[str, MailboxState] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def mailbox(self, address: str, interval: float) -> MailboxState:
        with self._lock:
            key = address.lower()
            if key not in self._states:
                self._states[key] = MailboxState(address, interval)
            return self._states[key]

    def all(self) -> list[MailboxSnapshot]:
        with self._lock:
            states = list(self._states.values())
        return [s.snapshot() for s in states]
