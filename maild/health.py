"""Is this maild instance healthy? Named checks behind `/healthz`.

`CHECKS` is a list of small functions, each returning one or more `Check`s
(a name, ok or not, a one-line detail). `/healthz` is healthy when every
check is ok; its JSON lists them all, and `reasons` the failing ones' details.
`check_history` reports a first run's history import ("importing history:
42%") without ever failing: live mail is handled meanwhile. Checks read the
pollers' in-memory state and run cheap queries; they never change anything.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from maild.app import App
from maild.metrics import oldest_queued
from maild.pollstate import AUTH_FAILURES_UNHEALTHY, MailboxSnapshot
from maild.store.history import importing_summary


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


CheckFn = Callable[[App], Iterable[Check]]


def check_mailboxes(app: App) -> Iterable[Check]:
    """Each mailbox polled within twice its interval plus the grace, logins accepted."""
    grace = app.config.http.poll_grace_seconds
    for snap in app.polls.all():
        yield mailbox_check(snap, time.time(), grace)


def mailbox_check(snap: MailboxSnapshot, now: float, grace: float) -> Check:
    name = f"mailbox {snap.address}"
    if snap.standby:
        return Check(name, True, "standing by: another instance holds this mailbox")
    if snap.auth_failures >= AUTH_FAILURES_UNHEALTHY:
        return Check(name, False, f"login refused {snap.auth_failures} times in a row: "
                                  f"{snap.last_error}")
    limit = 2 * snap.interval + grace
    age = now - (snap.last_ok or snap.started)
    if age <= limit:
        polled = f"polled {age:.0f} s ago" if snap.last_ok else "first poll in progress"
        return Check(name, True, polled)
    since = f"last polled {age:.0f} s ago" if snap.last_ok else f"not polled in {age:.0f} s"
    error = f"; last error: {snap.last_error}" if snap.last_error else ""
    return Check(name, False, f"{since} (limit {limit:.0f} s){error}")


def check_database(app: App) -> Iterable[Check]:
    started = time.perf_counter()
    try:
        with app.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        yield Check("database", False, f"does not answer: {_first_line(exc)}")
        return
    yield Check("database", True, f"answered in {(time.perf_counter() - started) * 1000:.0f} ms")


def check_outbox(app: App) -> Iterable[Check]:
    limit = app.config.http.outbox_stuck_minutes * 60
    try:
        with Session(app.engine) as session:
            oldest = oldest_queued(session)
    except SQLAlchemyError as exc:
        yield Check("outbox", False, f"cannot read: {_first_line(exc)}")
        return
    if oldest is None:
        yield Check("outbox", True, "empty")
        return
    age = (app.clock.now() - oldest).total_seconds()
    if age > limit:
        yield Check("outbox", False, f"stuck: the oldest message has waited {age / 60:.0f} min "
                                     f"(limit {limit // 60} min); see `maild check` for SMTP")
    else:
        yield Check("outbox", True, f"oldest message waiting {age:.0f} s")


def check_history(app: App) -> Iterable[Check]:
    """A first run's history import: progress only, never a failure (live mail is
    handled meanwhile, so an importing instance is healthy)."""
    try:
        with Session(app.engine) as session:
            summary = importing_summary(session)
    except SQLAlchemyError as exc:
        yield Check("history", True, f"progress not readable: {_first_line(exc)}")
        return
    yield Check("history", True, summary or "no history import running")


CHECKS: list[CheckFn] = [check_mailboxes, check_database, check_outbox, check_history]


def health(app: App, checks: Iterable[CheckFn] = CHECKS) -> tuple[bool, dict[str, Any]]:
    """(healthy, the JSON body of /healthz)."""
    results = [c for fn in checks for c in fn(app)]
    ok = all(c.ok for c in results)
    return ok, {"status": "ok" if ok else "unhealthy",
                "reasons": [f"{c.name}: {c.detail}" for c in results if not c.ok],
                "checks": [asdict(c) for c in results]}


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    line = str(orig if orig is not None else exc).strip()
    return line.splitlines()[0] if line else type(exc).__name__
