"""Header values longer than their columns (PostgreSQL enforces VARCHAR lengths,
SQLite does not): the message is stored, not quarantined, on both."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from maild.parse import ADDRESS_MAX, MESSAGE_ID_MAX, NAME_MAX, OVERLONG, parse_message
from maild.store.models import Customer, MessageRow, Quarantine, Ticket
from tests.builders import raw_mail
from tests.test_ingest import items, make


def test_overlong_display_name_and_address_are_stored(db_url: str) -> None:
    ing = make(db_url)
    name = "A" * 400
    local = "b" * 400
    res = ing.ingest_batch("inbox", "INBOX", 7, items(
        raw_mail(frm=f'"{name}" <{local}@example.net>', msgid="<long@x>")))
    assert (res.stored, res.quarantined) == (1, 0)
    with ing.sessions() as s:
        assert s.scalars(select(Quarantine)).all() == []
        row = s.scalars(select(MessageRow)).one()
        assert row.from_name.startswith("AAAA") and len(row.from_name) == NAME_MAX
        assert row.from_addr.endswith("@example.net") and len(row.from_addr) == ADDRESS_MAX
        assert row.parse_error is not None and OVERLONG in row.parse_error
        assert s.scalars(select(Customer)).one().address.startswith("bbbb")


def test_overlong_values_still_thread_and_find_their_customer(db_url: str) -> None:
    """Clipped values are the keys too: the same long sender and subject, again in the
    same batch and in a later one, find the same customer and ticket."""
    ing = make(db_url)
    sender = f'"{"N" * 300}" <{"c" * 400}@example.net>'
    subject = "S" * 600
    ing.ingest_batch("inbox", "INBOX", 7, items(
        raw_mail(frm=sender, subject=subject, msgid="<l1@x>"),
        raw_mail(frm=sender, subject="Re: " + subject, msgid="<l2@x>")))
    res = ing.ingest_batch("inbox", "INBOX", 7, items(
        raw_mail(frm=sender, subject="Re: " + subject, msgid="<l3@x>"), start=3))
    assert (res.stored, res.quarantined, res.new_tickets) == (1, 0, 0)
    with ing.sessions() as s:
        assert len(s.scalars(select(Customer)).all()) == 1
        assert len({row.ticket_id for row in s.scalars(select(MessageRow))}) == 1


def test_overlong_message_id_is_still_deduplicated(db_url: str) -> None:
    ing = make(db_url)
    mid = f"<{'i' * 1200}@x>"
    first = ing.ingest_batch("inbox", "INBOX", 7, items(raw_mail(msgid=mid)))
    again = ing.ingest_batch("inbox", "INBOX", 7, items(raw_mail(msgid=mid), start=2))
    assert (first.stored, again.stored, again.duplicates) == (1, 0, 1)
    with ing.sessions() as s:
        assert len(s.scalars(select(MessageRow)).one().message_id) == MESSAGE_ID_MAX


def test_limits_are_the_columns_lengths() -> None:
    columns = MessageRow.__table__.c
    assert (columns.from_addr.type.length, columns.from_name.type.length,
            columns.message_id.type.length) == (ADDRESS_MAX, NAME_MAX, MESSAGE_ID_MAX)
    assert Customer.__table__.c.address.type.length == ADDRESS_MAX


def test_any_overlong_string_is_clipped_with_a_log_line(
        db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    ing = make(db_url)
    ing.ingest_batch("inbox", "INBOX", 7, items(raw_mail()))
    with ing.sessions.begin() as s:
        s.scalars(select(Ticket)).one().first_responder = "r" * 400 + "@example.net"
    with ing.sessions() as s:
        assert len(s.scalars(select(Ticket)).one().first_responder or "") == 255
    assert "Ticket.first_responder: value of 412 characters clipped to 255" in caplog.text


def test_many_recipients_are_not_an_overlong_value() -> None:
    to = ", ".join(f"Person {i} <p{i}@example.org>" for i in range(200))
    parsed = parse_message(raw_mail(to=to))
    assert len(parsed.to) == 200 and parsed.parse_error is None
