"""Rows nobody reads back before the commit, written with one multi-row INSERT per table.

A history import stores thousands of messages a minute, and each needs a raw
source row and an event or two that nothing reads while its batch is being
stored. Made as ORM objects, those rows were a third of the writing time
(construction, unit-of-work bookkeeping, one INSERT each in the flush); kept
here as plain dicts, they are inserted after the batch's ORM flush (which writes
the tickets and messages they refer to) with one executemany per table. The
escalation job's events go the same way (after an import it fires on thousands
of old tickets at once).

Only for rows nobody queries before the commit: history and prefetch batches
(stored without savepoints) and the escalation run. Live mail keeps ORM rows,
which its handlers (mail commands, drafts) read back. The rows get their ids at
the INSERT, after the ORM's rows of the same transaction: readers order events
by (at, id). This module knows the two tables it writes and nothing else; it
never commits.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from maild.store.models import Base

SOURCES = Base.metadata.tables["message_sources"]
EVENTS = Base.metadata.tables["events"]


class BulkRows:
    """Message sources and events of one batch, written by `write` after the flush."""

    def __init__(self) -> None:
        self.sources: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []

    def source(self, message_pk: int, raw: bytes) -> None:
        self.sources.append({"message_pk": message_pk, "raw": raw})

    def event(self, ticket_id: int, at: datetime, kind: str, actor: str = "maild",
              **detail: Any) -> None:
        self.events.append({"ticket_id": ticket_id, "at": at, "kind": kind,
                            "actor": actor[:320], "detail": detail})

    def write(self, session: Session) -> None:
        """Insert what was gathered (the ORM rows they refer to must be flushed)."""
        if self.sources:
            session.execute(insert(SOURCES), self.sources)
        if self.events:
            session.execute(insert(EVENTS), self.events)
        self.sources, self.events = [], []
