"""Several mailboxes, without servers: [mailbox.smtp] parsing and its errors, the
choice of SMTP per sending mailbox, a mailbox that cannot send, and Sent copies
per mailbox when one mailbox's Sent fails. The real servers: tests/integration/
test_several_mailboxes.py."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from maild import smtp
from maild.app import App, build_app
from maild.clock import FixedClock
from maild.compose import compose
from maild.config import load_config
from maild.errors import ConfigError, MailboxError, SendError
from maild.mailbox_send import routed_connections
from maild.outbox import enqueue
from maild.store import repo
from maild.store.db import upgrade
from maild.store.models import OutboxRow
from tests.builders import utc

REPO = Path(__file__).resolve().parents[1]


def mailbox(address: str, smtp_port: int | None = None, security: str = "none") -> str:
    own = "" if smtp_port is None else (f'[mailbox.smtp]\nhost = "127.0.0.1"\nport = '
                                        f'{smtp_port}\nsecurity = "{security}"\n'
                                        "allow_insecure = true\n")
    return (f'[[mailbox]]\naddress = "{address}"\nimap_host = "127.0.0.1"\nimap_port = 1\n'
            f'security = "none"\nallow_insecure = true\nusername = "{address}"\n{own}')


def make(tmp: Path, body: str, db: str = "m.db") -> App:
    path = tmp / "maild.toml"
    path.write_text(f'[database]\nurl = "sqlite:///{tmp / db}"\n{body}\n'  # packaged rules
                    '[sla.policies.vip]\nfirst_response = "1h"\n')
    app = build_app(load_config(path), FixedClock(utc(2026, 11, 2, 10)), environ={})
    upgrade(app.engine)
    return app


SHARED = '[smtp]\nhost = "127.0.0.1"\nport = 2525\nsecurity = "none"\nallow_insecure = true\n'


def test_each_mailbox_gets_its_own_smtp_or_the_shared_one(tmp_path: Path) -> None:
    app = make(tmp_path, mailbox("support@example.com") + mailbox("sales@example.com", 2626)
               + SHARED)
    first, second = app.smtp_settings(0), app.smtp_settings(1)
    assert first is not None and second is not None
    assert (first.port, second.port) == (2525, 2626)
    assert app.mailbox_index("SALES@example.com") == 1
    assert app.mailbox_index("someone@else.org") == 0


def test_a_bad_mailbox_smtp_names_the_table(tmp_path: Path) -> None:
    path = tmp_path / "maild.toml"
    path.write_text(mailbox("support@example.com") + mailbox("sales@example.com", 2626)
                    + "bogus = 1\n" + SHARED)  # inside sales@'s [mailbox.smtp]
    with pytest.raises(ConfigError, match=r"mailbox\[1\]\.smtp\.bogus"):
        load_config(path)
    sales = mailbox("sales@example.com", 2626).rpartition("allow_insecure = true\n")[0]
    path.write_text(mailbox("support@example.com") + sales + SHARED)  # its smtp's is gone
    with pytest.raises(ConfigError, match=r"mailbox\[1\]\.smtp"):
        load_config(path)


def queue(app: App, sender: str, message_id_host: str = "x") -> str:
    with app.sessions.begin() as s:
        mb = repo.get_or_create_mailbox(s, sender, app.clock.now())
        out = compose(sender=sender, sender_name="S", to="ann@example.org", to_name="",
                      subject="Hi", body="Hello\n", date=app.clock.now(), ticket_id=None)
        enqueue(s, out, mailbox_id=mb.id, ticket_id=None, kind="notice", now=app.clock.now())
        return out.message_id


def test_mail_goes_out_through_its_mailboxs_smtp_and_one_without_any_waits(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = make(tmp_path, mailbox("support@example.com") + mailbox("sales@example.com", 2626))
    used: list[tuple[int, str]] = []

    def fake_send(settings: Any, raw: bytes, sender: str, rcpts: Sequence[str]) -> str:
        used.append((settings.port, sender))
        return "250 ok"

    monkeypatch.setattr(smtp, "send", fake_send)
    monkeypatch.setattr(smtp, "connection",  # the outbox reuses a connection per pass
                        lambda settings: nullcontext(partial(fake_send, settings)))
    stuck, sent = queue(app, "support@example.com"), queue(app, "sales@example.com")
    sender = app.outbox_sender()
    assert sender is not None
    report = sender.deliver_due()
    assert used == [(2626, "sales@example.com")] and report.sent == [sent]
    assert report.retry == [stuck]  # support@ has no SMTP at all: kept and retried
    with app.sessions() as s:
        row = s.scalars(select(OutboxRow).where(OutboxRow.message_id == stuck)).one()
        assert row.status == "queued" and "no [mailbox.smtp] and no [smtp]" in row.last_error


class FakeImap:
    """Records APPENDs per login; the login named in `failing` fails once."""

    appended: list[tuple[str, str, bytes]] = []
    failing: set[str] = set()

    def __init__(self, settings: Any) -> None:
        self.login = settings.username

    def __enter__(self) -> FakeImap:
        if self.login in FakeImap.failing:
            FakeImap.failing.discard(self.login)
            raise MailboxError(f"{self.login}: connection refused")
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def find_special_folder(self, flag: str) -> str:
        return "Sent"

    def append(self, folder: str, raw: bytes, flags: Sequence[str], when: datetime) -> int:
        FakeImap.appended.append((self.login, folder, raw))
        return 1


def test_copies_go_to_each_mailboxs_sent_and_are_not_made_twice(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = make(tmp_path, mailbox("support@example.com") + mailbox("sales@example.com") + SHARED)
    monkeypatch.setattr(smtp, "send", lambda *a: "250 ok")
    monkeypatch.setattr(smtp, "connection",  # the outbox reuses a connection per pass
                        lambda settings: nullcontext(partial((lambda *a: "250 ok"), settings)))
    monkeypatch.setattr("maild.app.MailboxClient", FakeImap)
    FakeImap.appended, FakeImap.failing = [], {"sales@example.com"}
    ids = [queue(app, "support@example.com"), queue(app, "sales@example.com")]
    sender = app.outbox_sender()
    assert sender is not None
    sender.deliver_due()  # sales@'s Sent fails: support@'s copy is made, sales@'s is not
    assert [login for login, _, _ in FakeImap.appended] == ["support@example.com"]
    sender.deliver_due()  # the retry makes only the missing copy
    logins = [login for login, _, _ in FakeImap.appended]
    assert logins == ["support@example.com", "sales@example.com"]
    for (login, _, raw), mid in zip(FakeImap.appended, ids, strict=True):
        assert mid.encode() in raw and f"From: S <{login}>".encode() in raw
    with app.sessions() as s:
        assert all(s.scalars(select(OutboxRow.in_sent_folder)).all())


def test_a_batch_reuses_one_connection_per_mailbox_and_closes_them_all() -> None:
    """`routed_connections`: for an outbox that reuses connections per batch."""
    opened: list[int] = []
    closed: list[int] = []
    sent: list[tuple[int, str]] = []

    @contextmanager
    def connect(index: int) -> Iterator[Any]:
        opened.append(index)
        try:
            yield lambda raw, sender, rcpts: sent.append((index, sender)) or "250 ok"
        finally:
            closed.append(index)

    index_of = {"support@example.com": 0, "sales@example.com": 1, "nosmtp@example.com": 2}.get
    with routed_connections(lambda i: None if i == 2 else connect(i),
                            lambda a: index_of(a, 0)) as send:
        for sender in ("support@example.com", "sales@example.com", "support@example.com",
                       "sales@example.com"):
            send(b"raw", sender, ["ann@example.org"])
        with pytest.raises(SendError, match="nosmtp@example.com: no"):
            send(b"raw", "nosmtp@example.com", ["ann@example.org"])
        assert closed == []
    assert opened == [0, 1] and sorted(closed) == [0, 1]
    assert sent == [(0, "support@example.com"), (1, "sales@example.com"),
                    (0, "support@example.com"), (1, "sales@example.com")]
