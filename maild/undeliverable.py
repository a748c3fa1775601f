"""Record on a ticket that our mail could not be delivered: the `delivery_failed` event.

One event shape for every way a failure reaches maild: a bounce (DSN) of mail we
sent, found at ingest, and a permanent refusal by our own SMTP server (e.g.
`smtputf8-unsupported`), found by the outbox. Detail: `address`, `status` (a DSN
status like 5.1.1, or maild's reason), `diagnostic` (one line), `message_id` (the
bounce's, when there is one). A bounce also remembers the address as undeliverable
(`Customer.bounced_at`): no ETA reply goes there for `autoreply.after_bounce_hours`.
Works in the caller's session; never commits.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.orm import Session

from maild.bounces import BounceDetails
from maild.compose import one_line
from maild.store import repo
from maild.store.after_commit import log_after_commit

log = logging.getLogger("maild.undeliverable")


def delivery_failed(session: Session, ticket_id: int, at: datetime, *, address: str,
                    status: str, diagnostic: str, message_id: str | None = None) -> None:
    detail = {"address": address, "status": status, "diagnostic": one_line(diagnostic)[:500]}
    if message_id:
        detail["message_id"] = message_id
    repo.add_event(session, ticket_id, at, "delivery_failed", **detail)
    log_after_commit(session, log, logging.WARNING, "ticket #%d: delivery to %s failed (%s %s)",
                     ticket_id, address, status, detail["diagnostic"][:200])


def record_bounce(session: Session, ticket_id: int, details: BounceDetails, message_id: str,
                  arrived: datetime) -> None:
    """A bounce's permanently failed recipients, and the addresses remembered."""
    for failed in details.recipients:
        delivery_failed(session, ticket_id, arrived, address=failed.address,
                        status=failed.status, diagnostic=failed.diagnostic,
                        message_id=message_id)
        customer = repo.find_customer(session, failed.address)
        if customer is not None:
            customer.bounced_at = max(customer.bounced_at or arrived, arrived)
