"""Log lines about tickets are written only for what was committed, naming the ticket it
was committed to (issue 15: a command mail was logged as `ticket #9 opened` and then stored
on ticket #4; a batch stored twice logged its messages twice)."""

from __future__ import annotations

import logging
import re

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from maild.app import App
from maild.clock import FixedClock
from maild.ingest import IngestItem, Ingestor
from maild.parse import ParsedMessage
from maild.store.after_commit import log_after_commit
from maild.tickets import StoredMessage
from tests.builders import authenticated, migrated_sessions, raw_mail, utc
from tests.test_replying import PASSWORD, app, ingest  # noqa: F401  (app: a fixture)

log = logging.getLogger("maild.test_after_commit")


def ticket_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("ticket #")]


def test_command_mail_is_logged_on_the_ticket_it_was_stored_on(
        app: App, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    ingest(app, raw_mail(body=PASSWORD), 1)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="maild"):
        # threads into nothing (the agent is no participant): it opens #2, then the
        # command handler moves it to #1 and removes #2, all before the commit
        ingest(app, authenticated(raw_mail(frm="Ayse <ayse@example.com>",
                                           msgid="<c1@example.com>",
                                           subject="[#1] please close", body="#tag vip")), 2)
    lines = ticket_lines(caplog)
    assert not [line for line in lines if re.match(r"ticket #2\b", line)], lines
    assert sorted(line for line in lines if "<c1@example.com>" in line) == [
        "ticket #1 joined: inbound customer message <c1@example.com> "
        "(moved: command mail; human)",
        "ticket #1: command mail <c1@example.com> from ayse@example.com done: tag vip"]


class FailOn:
    """A handler that fails for one Message-ID (a message's failure: it is quarantined)."""

    name = "fail-on"

    def __init__(self, message_id: str) -> None:
        self.message_id = message_id

    def handle(self, session: Session, stored: StoredMessage, parsed: ParsedMessage) -> None:
        if parsed.message_id == self.message_id:
            raise ValueError("this one fails")


def test_a_batch_stored_again_logs_each_stored_message_once(
        tmp_path: object, caplog: pytest.LogCaptureFixture) -> None:
    sessions = migrated_sessions(f"sqlite:///{tmp_path}/b.db")
    ing = Ingestor(sessions, FixedClock(utc(2026, 11, 2, 10)), "support@example.com",
                   handlers=[FailOn("<m2@example.org>")])
    items = [IngestItem(uid, raw_mail(frm=f"c{uid}@example.org", msgid=f"<m{uid}@example.org>",
                                      subject=f"s{uid}"), utc(2026, 11, 2, 10))
             for uid in (1, 2, 3)]
    with caplog.at_level(logging.INFO, logger="maild"):
        result = ing.ingest_batch("inbox", "INBOX", 1, items)
    assert (result.stored, result.quarantined) == (2, 1)
    lines = [line for line in ticket_lines(caplog) if " opened: " in line]
    assert [re.search(r"<m\d@", line).group(0) for line in lines] == ["<m1@", "<m3@"]  # type: ignore[union-attr]
    assert lines[0].startswith("ticket #1 opened") and lines[1].startswith("ticket #2 opened")


# --- the mechanism ------------------------------------------------------------------------


@pytest.fixture
def sessions() -> sessionmaker[Session]:
    return sessionmaker(sa.create_engine("sqlite://"))


def said(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == log.name]


def test_written_after_commit_not_before(sessions: sessionmaker[Session],
                                         caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger=log.name), sessions.begin() as s:
        s.execute(sa.text("select 1"))
        log_after_commit(s, log, logging.INFO, "kept %d", 1)
        with s.begin_nested():
            log_after_commit(s, log, logging.INFO, "kept %d", 2)
        assert said(caplog) == []  # a savepoint released is no commit
    assert said(caplog) == ["kept 1", "kept 2"]


def test_dropped_with_a_rollback(sessions: sessionmaker[Session],
                                 caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger=log.name):
        with sessions.begin() as s:
            s.execute(sa.text("select 1"))
            log_after_commit(s, log, logging.INFO, "kept")
            with pytest.raises(ValueError), s.begin_nested():
                log_after_commit(s, log, logging.INFO, "in a savepoint rolled back")
                raise ValueError
        with pytest.raises(ValueError), sessions.begin() as s:
            s.execute(sa.text("select 1"))
            log_after_commit(s, log, logging.INFO, "in a transaction rolled back")
            raise ValueError
        with sessions() as s:  # closed without a commit
            s.execute(sa.text("select 1"))
            log_after_commit(s, log, logging.INFO, "never committed")
    assert said(caplog) == ["kept"]
