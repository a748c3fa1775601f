"""Poller resilience with a fake IMAP client: any failure in a cycle (IMAP or
database) is logged and retried with backoff; the thread never dies."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from maild import poller as poller_mod
from maild.errors import MailboxError
from maild.poller import CycleReport, Poller


class FakeClient:
    def __init__(self, script: list[Any]) -> None:
        self.script = script

    def connect(self) -> FakeClient:
        step = self.script.pop(0) if self.script else None
        if isinstance(step, Exception):
            raise step
        return self

    def __enter__(self) -> FakeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def has_idle(self) -> bool:
        return False

    def seconds_until_renewal(self) -> float | None:
        return None


def test_watch_survives_database_and_imap_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(poller_mod, "BACKOFF_START", 0.01)
    script: list[Any] = [MailboxError("IMAP down"), None, None]
    calls = {"n": 0}
    stop = threading.Event()

    def cycle(self: Poller, client: Any, progress: Any = None) -> CycleReport:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("database is locked")
        stop.set()
        return CycleReport()

    monkeypatch.setattr(Poller, "cycle", cycle)
    p = Poller(lambda: FakeClient(script), ingestor=None)  # type: ignore[arg-type]
    seen: list[CycleReport] = []
    t = threading.Thread(target=p.watch, args=(stop, seen.append, 0.01, False))
    t.start()
    t.join(timeout=5)
    assert not t.is_alive() and calls["n"] == 2 and len(seen) == 1


class IdleClient(FakeClient):
    """Connects per the script; its IDLE wait fails with a lost connection."""

    def has_idle(self) -> bool:
        return True

    def select(self, folder: str) -> None:
        pass

    def idle_wait(self, seconds: float) -> bool:
        raise MailboxError("IMAP h:1: connection lost during idle_done: the server closed it")


def test_lost_connection_is_logged_and_backoff_restarts(monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture
                                                        ) -> None:
    """refused, refused, lost, lost: the waits after a working session start at 1 again."""
    monkeypatch.setattr(poller_mod, "BACKOFF_START", 0.01)
    waits: list[float] = []
    stop = threading.Event()
    script: list[Any] = [MailboxError("IMAP h:1: cannot connect: Connection refused"),
                         MailboxError("IMAP h:1: cannot connect: Connection refused"), None, None]
    real_wait = stop.wait

    def wait(timeout: float | None = None) -> bool:
        if timeout is not None and timeout >= 0.01 and not script:
            stop.set()
        waits.append(timeout or 0.0)
        return real_wait(0)

    monkeypatch.setattr(stop, "wait", wait)
    monkeypatch.setattr(Poller, "cycle", lambda self, client, progress=None: CycleReport())
    p = Poller(lambda: IdleClient(script), ingestor=None)  # type: ignore[arg-type]
    with caplog.at_level("INFO", logger="maild.poller"):
        p.watch(stop, lambda rep: None, 60.0, True)
    assert waits[:3] == [0.01, 0.02, 0.01]  # doubled while refused, reset after a session
    lines = [r.getMessage() for r in caplog.records]
    assert "cannot connect: Connection refused; reconnecting in 0 s (attempt 1)" in lines[0]
    assert "IMAP connection restored after 2 failed attempt(s)" in lines[2]
    assert "connection lost during idle_done" in lines[3]


class ByeImap:
    """An imapclient stand-in whose server shuts down during IDLE."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.done = 0

    def login(self, *args: Any) -> None:
        pass

    def idle(self) -> None:
        pass

    def idle_check(self, timeout: float) -> list[Any]:
        return [(b"BYE", b"Server shutting down.")]

    def idle_done(self) -> None:
        self.done += 1
        raise OSError("socket closed")

    def logout(self) -> None:
        raise OSError("socket closed")

    def shutdown(self) -> None:
        pass


def test_idle_bye_is_a_lost_connection_not_an_empty_wait() -> None:
    from maild.mailbox import ImapSettings, MailboxClient

    settings = ImapSettings("imap.example.com", 143, "none", "u", "p")
    client = MailboxClient(settings, factory=ByeImap).connect()
    with pytest.raises(MailboxError) as err:
        client.idle_wait(5)
    client.close()  # a dead connection closes quietly
    assert str(err.value) == ("IMAP imap.example.com:143: connection lost during IDLE: "
                              "the server said BYE Server shutting down.")


class ExpiringClient(FakeClient):
    """An OAuth2 session whose token is already due for renewal after each cycle."""

    connects = 0

    def connect(self) -> ExpiringClient:
        ExpiringClient.connects += 1
        return self

    def seconds_until_renewal(self) -> float | None:
        return 0.0


def test_oauth2_session_logs_in_afresh_when_its_token_is_due(
        monkeypatch: pytest.MonkeyPatch) -> None:
    stop = threading.Event()
    cycles = {"n": 0}

    def cycle(self: Poller, client: Any, progress: Any = None) -> CycleReport:
        cycles["n"] += 1
        if cycles["n"] == 3:
            stop.set()
        return CycleReport()

    monkeypatch.setattr(Poller, "cycle", cycle)
    p = Poller(lambda: ExpiringClient([]), ingestor=None)  # type: ignore[arg-type]
    t = threading.Thread(target=p.watch, args=(stop, lambda rep: None, 60.0, False))
    t.start()
    t.join(timeout=5)
    # No 60 s wait between cycles: each session ended at once for a fresh login.
    assert not t.is_alive() and ExpiringClient.connects == 3
