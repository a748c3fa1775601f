"""`maild customers export ADDRESS`: everything maild holds about one person, as one
JSON-ready dict: the customer row, their tickets with every message (text, HTML,
the raw message as text) and event, their surveys and answers, the mail maild
queued or sent to them, and quarantined mail that names them. Reads only."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from maild.errors import NotFoundError
from maild.store import repo
from maild.store.models import (
    Customer,
    Event,
    MessageRow,
    MessageSource,
    OutboxRow,
    Quarantine,
    Survey,
    Ticket,
)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def raw_text(raw: bytes) -> str:
    """A raw message as text: UTF-8 where it is, the rest byte for byte (latin-1)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def find_customer(session: Session, address: str) -> Customer:
    found = repo.find_customer(session, address.strip().lower()) or \
        repo.find_customer(session, address.strip())
    if found is None:
        raise NotFoundError(f"no customer with address {address!r}")
    return found


def _message(m: MessageRow, raw: bytes | None) -> dict[str, Any]:
    return {"id": m.id, "message_id": m.message_id, "direction": m.direction, "auto": m.auto,
            "from": m.from_addr, "from_name": m.from_name, "to": list(m.to_addrs or []),
            "cc": list(m.cc_addrs or []), "subject": m.subject, "date": _iso(m.date),
            "arrived_at": _iso(m.arrived_at), "text": m.text, "html": m.html,
            "attachments": list(m.attachments or []),
            "raw": raw_text(raw) if raw is not None else None}


def _ticket(session: Session, t: Ticket) -> dict[str, Any]:
    messages = session.scalars(select(MessageRow).where(MessageRow.ticket_id == t.id)
                               .order_by(MessageRow.id)).all()
    raws = dict(session.execute(select(MessageSource.message_pk, MessageSource.raw).where(
        MessageSource.message_pk.in_([m.id for m in messages]))).all()) \
        if messages else {}
    events = session.scalars(select(Event).where(Event.ticket_id == t.id)
                             .order_by(Event.at, Event.id)).all()  # as `tickets show`
    return {"id": t.id, "subject": t.subject, "status": t.status, "priority": t.priority,
            "tags": list(t.tags or []), "language": t.language, "assignee": t.assignee,
            "created_at": _iso(t.created_at), "solved_at": _iso(t.solved_at),
            "text_purged_at": _iso(t.text_purged_at),
            "messages": [_message(m, raws.get(m.id)) for m in messages],
            "events": [{"at": _iso(e.at), "kind": e.kind, "actor": e.actor, **(e.detail or {})}
                       for e in events]}


def export_customer(session: Session, address: str, now: datetime) -> dict[str, Any]:
    """One JSON-ready document of everything stored about the customer `address`."""
    c = find_customer(session, address)
    tickets = session.scalars(select(Ticket).where(Ticket.customer_id == c.id)
                              .order_by(Ticket.id)).all()
    surveys = session.scalars(select(Survey).where(Survey.customer_id == c.id)
                              .order_by(Survey.id)).all()
    outbox = session.scalars(select(OutboxRow).where(OutboxRow.recipient == c.address)
                             .order_by(OutboxRow.id)).all()
    return {
        "exported_at": now.isoformat(),
        "customer": {"address": c.address, "name": c.name, "created_at": _iso(c.created_at),
                     "trusted": c.trusted, "bounced_at": _iso(c.bounced_at),
                     "survey_opt_out_at": _iso(c.survey_opt_out_at),
                     "erased_at": _iso(c.erased_at)},
        "tickets": [_ticket(session, t) for t in tickets],
        "surveys": [{"ticket": s.ticket_id, "kind": s.kind, "status": s.status,
                     "sent_at": _iso(s.created_at), "answered_at": _iso(s.answered_at),
                     "score": s.score} for s in surveys],
        "mail_to_customer": [{"kind": o.kind, "status": o.status, "subject": o.subject,
                              "created_at": _iso(o.created_at), "sent_at": _iso(o.sent_at),
                              "raw": raw_text(o.raw)} for o in outbox],
        "quarantine": [{"id": q.id, "at": _iso(q.at), "error": q.error, "raw": raw_text(q.raw)}
                       for q in quarantined_mentioning(session, c.address)],
        "note": "maild's database only; the IMAP mailbox keeps its own copies",
    }


def quarantined_mentioning(session: Session, address: str) -> list[Quarantine]:
    """Quarantined raw messages that contain `address` (case-insensitive)."""
    needle = address.lower().encode()
    out = []
    for q in session.scalars(select(Quarantine).order_by(Quarantine.id)):
        if needle in (q.raw or b"").lower():
            out.append(q)
    return out
