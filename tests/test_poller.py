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
