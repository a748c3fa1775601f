"""Classify an existing database's stored mail again (migration 0008, and later upgrades).

Each stored inbound message is parsed from its raw source and classified
(`maild.classify`, with maild's own addresses; agent addresses live in the config,
which a migration does not read). Machine mail becomes `auto` with its kind and
reason; a ticket that machine mail opened, that no customer and no agent ever
wrote on, becomes `filtered`, out of the backlog, the SLA clock and the KPIs.
Nothing is deleted and no event history is rewritten; each change is recorded
as an event. Works on one connection inside the caller's transaction, in
chunks, with progress in the log.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from sqlalchemy import Connection, text

from maild.classify import ClassifyContext, classify
from maild.parse import parse_message

log = logging.getLogger("maild.reclassify")
CHUNK = 2_000


def reclassify_database(conn: Connection) -> tuple[int, int]:
    """(machine messages found, tickets filtered)."""
    own = frozenset(a.lower() for (a,) in conn.execute(text("SELECT address FROM mailboxes")))
    ctx = ClassifyContext(own_addresses=own)
    total = conn.execute(text("SELECT count(*) FROM messages WHERE direction = 'in'")).scalar()
    if not total:
        return 0, 0
    log.info("classifying %d stored inbound messages again", total)
    machine: dict[int, str] = {}  # ticket id -> kind of its machine mail
    done, last = 0, 0
    while True:
        rows = conn.execute(text(
            "SELECT m.id, m.ticket_id, s.raw FROM messages m JOIN message_sources s "
            "ON s.message_pk = m.id WHERE m.direction = 'in' AND m.id > :last "
            "ORDER BY m.id LIMIT :n"), {"last": last, "n": CHUNK}).all()
        if not rows:
            break
        for msg_id, ticket_id, raw in rows:
            found = classify(parse_message(bytes(raw)), ctx)
            if found.machine:
                conn.execute(text(
                    "UPDATE messages SET sender_class = 'machine', machine_kind = :kind, "
                    "class_reason = :reason, auto = :yes WHERE id = :id"),
                    {"kind": found.kind, "reason": found.reason[:64], "yes": True, "id": msg_id})
                machine.setdefault(ticket_id, f"{found.kind}|{found.reason}")
        done += len(rows)
        last = rows[-1][0]
        log.info("classified %d of %d messages (%d%%)", done, total, done * 100 // total)
    return len(machine), _filter_tickets(conn, machine)


def _filter_tickets(conn: Connection, machine: dict[int, str]) -> int:
    """Tickets only machine mail wrote on (no customer message, no agent reply)."""
    filtered = 0
    now = datetime.now(UTC).replace(tzinfo=None)
    for ticket_id, kind_reason in machine.items():
        people = conn.execute(text(
            "SELECT count(*) FROM messages WHERE ticket_id = :t AND auto = :no"),
            {"t": ticket_id, "no": False}).scalar()
        if people:
            continue
        kind, reason = kind_reason.split("|", 1)
        updated = conn.execute(text(
            "UPDATE tickets SET status = 'filtered', filtered_kind = :kind, "
            "filtered_reason = :reason, sla_due_at = NULL, sla_warn_at = NULL, "
            "next_due_at = NULL, sla_breached = :no, last_customer_at = NULL "
            "WHERE id = :t AND status <> 'filtered'"),
            {"kind": kind, "reason": f"{reason} (re-classified)"[:255], "no": False,
             "t": ticket_id})
        if updated.rowcount:
            filtered += 1
            conn.execute(text(
                "INSERT INTO events (ticket_id, at, kind, actor, detail) VALUES "
                "(:t, :at, 'filtered', 'maild', :detail)"),
                {"t": ticket_id, "at": now,
                 "detail": json.dumps({"mail_kind": kind, "reason": reason, "upgrade": True})})
    log.info("%d ticket(s) opened by machine mail are now filtered", filtered)
    return filtered
