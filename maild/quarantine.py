"""Quarantined messages: look at them, retry them after a fix, or drop them on record.

Ingest keeps a message it failed to store in the `quarantine` table, raw, with
the error (`maild.ingest`). `retry` stores it again through the very path IMAP
mail takes (`Ingestor.store_one`: parse, thread, rules, auto-reply, drafts) and,
in the same transaction, marks the row retried with the ticket it joined; a retry
that fails again leaves the row held with the new error. `drop` never deletes:
it marks the row dropped (who, when), records a `quarantine_dropped` event naming
the message and logs it. Nothing here talks to IMAP or SMTP or prints.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from email.header import decode_header, make_header
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from maild.errors import MaildError, NotFoundError
from maild.ingest import IngestItem, Ingestor
from maild.store import repo
from maild.store.models import FolderState, Mailbox, Quarantine
from maild.tickets import StoredMessage
from maild.views import iso

log = logging.getLogger("maild.quarantine")
HEADER_BYTES = 16_384  # headers shown in a listing are read from this much of the message
SHOWN_HEADERS = ("From", "To", "Subject", "Date", "Message-ID")


def status_of(row_resolved: bool, outcome: str | None) -> str:
    return outcome or ("resolved" if row_resolved else "held")


def headers(raw: bytes) -> dict[str, str]:
    """A few headers of a (possibly hostile) message, decoded, one line each; a header
    that cannot be decoded is shown as the raw text."""
    try:
        msg = BytesHeaderParser(policy=compat32).parsebytes(raw, headersonly=True)
    except Exception:  # a message that broke ingest may break the parser too
        return {}
    out: dict[str, str] = {}
    for name in SHOWN_HEADERS:
        value = msg.get(name)
        if value is None:
            continue
        try:
            text = str(make_header(decode_header(str(value))))
        except Exception:
            text = str(value)
        out[name.lower()] = " ".join(text.split())[:300]
    return out


def _summary(row: Any, address: str, head: bytes, size: int) -> dict[str, Any]:
    h = headers(head)
    return {"id": row.id, "mailbox": address, "folder": row.folder, "uid": row.uid,
            "at": iso(row.at), "status": status_of(row.resolved, row.outcome),
            "retries": row.retries, "size": size, "from": h.get("from"),
            "subject": h.get("subject"), "message_id": h.get("message-id"),
            "error": row.error.splitlines()[0] if row.error else "",
            "ticket_id": row.ticket_id}


def list_quarantine(session: Session, *, include_resolved: bool = False,
                    limit: int | None = None) -> list[dict[str, Any]]:
    """Held messages newest first (all of them with `include_resolved`); reads only the
    head of each raw message."""
    q = select(Quarantine.id, Quarantine.folder, Quarantine.uid, Quarantine.at,
               Quarantine.resolved, Quarantine.outcome, Quarantine.retries, Quarantine.error,
               Quarantine.ticket_id, Mailbox.address,
               func.substr(Quarantine.raw, 1, HEADER_BYTES).label("head"),
               func.length(Quarantine.raw).label("size")
               ).join(Mailbox, Mailbox.id == Quarantine.mailbox_id).order_by(
        Quarantine.id.desc())
    if not include_resolved:
        q = q.where(Quarantine.resolved.is_(False))
    if limit:
        q = q.limit(limit)
    return [_summary(r, r.address, bytes(r.head or b""), int(r.size or 0))
            for r in session.execute(q).all()]


def get_row(session: Session, qid: int) -> Quarantine:
    row = session.get(Quarantine, qid)
    if row is None:
        raise NotFoundError(f"quarantine {qid}: no such quarantined message")
    return row


def show_quarantine(session: Session, qid: int) -> dict[str, Any]:
    row = get_row(session, qid)
    address = session.get_one(Mailbox, row.mailbox_id).address
    out = _summary(row, address, row.raw, len(row.raw))
    out.update(error=row.error, role=row.role, uidvalidity=row.uidvalidity,
               internaldate=iso(row.internaldate), resolved_at=iso(row.resolved_at),
               resolved_by=row.resolved_by, headers=headers(row.raw))
    return out


def role_of(session: Session, row: Quarantine) -> str:
    """inbox | sent: stored with the row, or (older rows) the folder's checkpoint role."""
    if row.role:
        return row.role
    role = session.scalar(select(FolderState.role).where(
        FolderState.mailbox_id == row.mailbox_id, FolderState.name == row.folder))
    return role or "inbox"


def retry(sessions: sessionmaker[Session], ingestor_for: Callable[[str], Ingestor], qid: int,
          *, actor: str, now: datetime) -> dict[str, Any]:
    """Store quarantined message `qid` again; returns what became of it. `ingestor_for`
    maps a mailbox address to its Ingestor (raises if it is not configured)."""
    with sessions() as session:
        row = get_row(session, qid)
        if row.outcome == "retried":
            raise MaildError(f"quarantine {qid}: already retried at {iso(row.resolved_at)} "
                             f"(ticket #{row.ticket_id})")
        address = session.get_one(Mailbox, row.mailbox_id).address
        role, folder, uidvalidity = role_of(session, row), row.folder, row.uidvalidity
        item = IngestItem(row.uid, row.raw, row.internaldate or row.at)
    ingestor = ingestor_for(address)

    def mark(session: Session, stored: StoredMessage | None) -> None:
        q = session.get_one(Quarantine, qid)
        q.resolved, q.outcome, q.resolved_at, q.resolved_by = True, "retried", now, actor
        q.retries += 1
        q.ticket_id = stored.ticket.id if stored is not None else None
        if stored is not None:
            repo.add_event(session, stored.ticket.id, now, "quarantine_retried", actor=actor,
                           quarantine_id=qid, message_id=stored.row.message_id)

    try:
        stored = ingestor.store_one(role, folder, uidvalidity, item, mark)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"[:2000]
        with sessions.begin() as session:
            q = session.get_one(Quarantine, qid)
            q.retries += 1
            q.error = error
        log.warning("quarantine %d: retry failed, still held: %s", qid, error)
        raise MaildError(f"quarantine {qid}: retry failed, the message stays in "
                         f"quarantine: {error.splitlines()[0]}") from None
    result = {"id": qid, "status": "retried", "duplicate": stored is None,
              "ticket_id": stored.ticket.id if stored else None,
              "new_ticket": bool(stored and stored.new_ticket)}
    log.info("quarantine %d: retried by %s: %s", qid, actor,
             f"ticket #{result['ticket_id']}" if stored else "already stored (duplicate)")
    return result


def drop(session: Session, qid: int, *, actor: str, now: datetime,
         reason: str | None = None) -> dict[str, Any]:
    """Mark `qid` dropped, on record: an event and a log line name what was dropped. The
    row and its raw message stay (`quarantine show --raw` still has it)."""
    row = get_row(session, qid)
    if row.resolved:
        raise MaildError(f"quarantine {qid}: already {status_of(row.resolved, row.outcome)}")
    address = session.get_one(Mailbox, row.mailbox_id).address
    info = _summary(row, address, row.raw, len(row.raw))
    row.resolved, row.outcome, row.resolved_at, row.resolved_by = True, "dropped", now, actor
    detail = {k: info[k] for k in ("mailbox", "folder", "uid", "from", "subject", "message_id",
                                   "size", "error")}
    repo.add_event(session, None, now, "quarantine_dropped", actor=actor, quarantine_id=qid,
                   reason=reason, **detail)
    log.warning("quarantine %d dropped by %s%s: %s from %s, %r (%d bytes); error was: %s",
                qid, actor, f" ({reason})" if reason else "", info["message_id"],
                info["from"], info["subject"], info["size"], info["error"])
    return {**info, "status": "dropped", "reason": reason}
