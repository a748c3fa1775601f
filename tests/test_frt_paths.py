"""A reply sent through maild is recorded like a reply found in Sent (issue 15).

`stats` reads first-response figures stored on the ticket at the reply
(`frt_wall_seconds`, `frt_business_seconds`, `first_responder`) and computes
them only where they are missing. A macro reply that the outbox sends is stored
by the outbox, not by ingest: it must store the same figures, or every ticket
answered through maild takes `stats`' slow path (and the benchmark, which loads
stored figures, would not measure it).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from functools import partial
from pathlib import Path

import pytest

from maild import smtp
from maild.app import App, build_app
from maild.clock import FixedClock
from maild.config import load_config
from maild.replying import Agent, prepare_reply, send_reply
from maild.store.db import upgrade
from maild.store.models import Ticket
from tests.builders import raw_mail, utc
from tests.test_reopen_sla import ingest, stats
from tests.test_replying import SUPPORT, write_config

SMTP = """
[smtp]
host = "127.0.0.1"
port = 1
security = "none"
allow_insecure = true
"""


@pytest.fixture
def app(db_url: str, tmp_path: Path) -> App:
    built = build_app(load_config(write_config(tmp_path, db_url, SMTP)),
                      FixedClock(utc(2026, 11, 2, 10)), environ={})
    upgrade(built.engine)
    return built


def test_reply_sent_by_maild_stores_the_figures_a_reply_in_sent_does(
        app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[bytes] = []

    def fake_send(_settings: object, raw: bytes, _sender: str, _rcpts: Sequence[str]) -> str:
        sent.append(raw)
        return "250 ok"

    monkeypatch.setattr(smtp, "send", fake_send)
    monkeypatch.setattr(smtp, "connection",  # the outbox reuses a connection per pass
                        lambda settings: nullcontext(partial(fake_send, settings)))
    ingest(app, raw_mail(), 1, utc(2026, 11, 2, 10))  # ticket 1: Ann, 10:00
    ingest(app, raw_mail(frm="Bob <bob@example.net>", msgid="<b1@example.net>",
                         subject="Refund please"), 2, utc(2026, 11, 2, 10))  # ticket 2
    # ticket 1 answered from a mail client: the reply is found in Sent at 11:30
    ingest(app, raw_mail(frm=f"Ayşe <{SUPPORT}>", to="ann@example.org", msgid="<r1@example.com>",
                         subject="Re: Order missing", in_reply_to="<m1@example.org>",
                         date="Mon, 02 Nov 2026 11:30:00 +0000"), 3, utc(2026, 11, 2, 11, 30),
           role="sent")
    # ticket 2 answered through maild (`maild reply --send`) at 11:30, sent at once
    with app.sessions.begin() as s:
        tid = s.query(Ticket).filter(Ticket.subject == "Refund please").one().id
        reply = prepare_reply(s, app.automation(), tid, "refund-policy",
                              agent=Agent("Ayşe", "ayse@example.com"), now=app.clock.now())
        send_reply(s, reply, now=app.clock.now(), actor="ayse@example.com")
    sender = app.outbox_sender()
    assert sender is not None
    sender.deliver_due()
    assert len(sent) == 3  # the two ETA auto-replies and the macro reply
    with app.sessions() as s:
        tickets = s.query(Ticket).order_by(Ticket.id).all()
        figures = [(t.frt_wall_seconds, t.frt_business_seconds, t.first_response_at)
                   for t in tickets]
        assert figures == [(5400.0, 5400.0, utc(2026, 11, 2, 11, 30))] * 2
        assert all(t.first_responder for t in tickets)
    day = stats(app, utc(2026, 11, 2), utc(2026, 11, 3), now=utc(2026, 11, 2, 12))
    assert day["first_responses"] == 2 and day["frt_business_seconds"]["median"] == 5400
