"""Drafts that help (issue 16, deliverable 6), measured on the golden threading corpus.

Every INBOX message of tests/corpus/threading is ingested through the real handler
chain (rules, ETA reply, drafts) at its own arrival time, with drafts on. For each
ticket the manifest names the macro an agent would answer with (`draft_macro`),
the draft maild records must be that macro; for the others, if maild drafts at
all, it never drafts an acknowledgement macro (`greeting`) after an ETA reply,
which would only repeat what the customer was already told. Run with -s for the
table.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from maild.app import App, build_app
from maild.clock import FixedClock
from maild.config import load_config
from maild.drafts import draft_macro
from maild.ingest import IngestItem, Ingestor
from maild.macros import load_macros
from maild.resources import default_macros
from maild.store.db import upgrade
from maild.store.models import Event, OutboxRow, Ticket
from tests.corpus.loader import load_corpus
from tests.test_replying import write_config

CORPUS = load_corpus("threading")


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> App:
    tmp = tmp_path_factory.mktemp("drafts-corpus")
    config = write_config(tmp, f"sqlite:///{tmp / 'maild.db'}").read_text().replace(
        'username = "support@example.com"', 'username = "support@example.com"\ndrafts = true')
    (tmp / "maild.toml").write_text(config)
    inbox = CORPUS.folder("INBOX")
    app = build_app(load_config(tmp / "maild.toml"), FixedClock(inbox[0].internaldate),
                    environ={})
    upgrade(app.engine)
    ingest = Ingestor(app.sessions, app.clock, CORPUS.mailbox,
                      own_addresses=app.own_addresses(), routing=app.routing(),
                      handlers=app._handlers(app.automation(), app.config.mailboxes[0]))
    assert isinstance(app.clock, FixedClock)
    for uid, msg in enumerate(inbox, start=1):
        app.clock.set(msg.internaldate)
        ingest.ingest_batch("inbox", "INBOX", 1, [IngestItem(uid, msg.raw, msg.internaldate)])
    return app


def drafts_by_ticket(app: App) -> dict[int, tuple[str, str | None, bool, list[str]]]:
    """ticket number -> (subject, drafted macro, ETA reply queued, suggestions)."""
    with app.sessions() as s:
        drafted = {tid: str(detail["macro"]) for tid, detail in s.execute(
            select(Event.ticket_id, Event.detail).where(Event.kind == "draft_pending"))}
        acked = set(s.scalars(select(OutboxRow.ticket_id).where(OutboxRow.kind == "auto_reply")))
        return {t.id: (t.subject, drafted.get(t.id), t.id in acked,
                       [str(x["name"]) for x in t.suggestions])
                for t in s.scalars(select(Ticket).order_by(Ticket.id))}


def test_the_draft_is_the_expected_macro_for_every_ticket_that_has_one(replayed: App) -> None:
    got = drafts_by_ticket(replayed)
    assert sorted(got) == [t.number for t in CORPUS.tickets]  # ticket ids = corpus numbers
    rows, wrong = [], []
    acknowledgements = {m.name for m in replayed.automation().macros.all() if m.acknowledgement}
    for ticket in CORPUS.tickets:
        subject, drafted, acked, suggested = got[ticket.number]
        rows.append(f"#{ticket.number:<3} {subject[:40]:40} expected {ticket.draft_macro or '-':17}"
                    f" draft {drafted or '-':17} eta {'yes' if acked else 'no ':3} "
                    f"suggested {', '.join(suggested)}")
        if ticket.draft_macro is not None and drafted != ticket.draft_macro:
            wrong.append(ticket.number)
        if acked and drafted in acknowledgements:
            wrong.append(ticket.number)
    print("\n" + "\n".join(rows))
    assert not wrong, "\n".join(rows)
    assert sum(t.draft_macro is not None for t in CORPUS.tickets) == 5  # the measure's size
    assert sum(acked for _, _, acked, _ in got.values()) >= 5  # ETA replies did go out


def test_an_acknowledgement_macro_is_never_the_draft_after_an_eta_reply() -> None:
    macros = load_macros(default_macros())
    ranked = [{"name": "greeting"}, {"name": "password-reset"}]
    assert draft_macro(ranked, macros, "en", acknowledged=True) == "password-reset"
    assert draft_macro(ranked, macros, "tr", acknowledged=True) == "password-reset"
    assert draft_macro(ranked, macros, "en", acknowledged=False) == "greeting"
    assert draft_macro([{"name": "greeting"}], macros, "en", acknowledged=True) is None
    assert draft_macro([], macros, "en", acknowledged=False) is None


def test_manifest_names_real_macros() -> None:
    names = load_macros(default_macros()).names()
    assert {t.draft_macro for t in CORPUS.tickets if t.draft_macro} <= names
