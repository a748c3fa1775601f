"""The history lane's checkpoint and progress in the database (`history_imports`).

One row per folder: where live mail starts (`boundary_uid`), how far history is
stored (`cursor_uid`, advanced in the transaction that stores the batch) and the
progress figures others read (`maild check`, /healthz: `history_progress`).
This module only reads and writes those rows (and the folder checkpoint they
start with); it does no IMAP and decides nothing about mail.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from maild.store.models import FolderState, HistoryImport, Mailbox, MessageRow


@dataclass(frozen=True)
class HistoryProgress:
    """How far one folder's history import is (`maild check`, /healthz, log lines)."""

    mailbox: str
    role: str
    folder: str
    done: int
    total: int
    started_at: datetime
    updated_at: datetime
    finished: bool

    @property
    def percent(self) -> int:
        """Whole percent done; 100 only once finished."""
        if self.finished:
            return 100
        return min(99, int(self.done * 100 / self.total)) if self.total else 0


def get_history(session: Session, mailbox_id: int, role: str) -> HistoryImport | None:
    return session.scalar(select(HistoryImport).where(
        HistoryImport.mailbox_id == mailbox_id, HistoryImport.role == role))


def start_history(session: Session, mailbox_id: int, role: str, folder: str,
                  uidvalidity: int, boundary: int, since: datetime | None, total: int,
                  now: datetime) -> None:
    """Split a folder maild has no checkpoint for: UIDs from `boundary` on are live (the
    folder checkpoint starts just below it), those under it are history (`total` of
    them). One transaction, so a crash leaves either both or neither."""
    state = session.scalar(select(FolderState).where(
        FolderState.mailbox_id == mailbox_id, FolderState.role == role))
    if state is None:
        state = FolderState(mailbox_id=mailbox_id, role=role, name=folder)
        session.add(state)
    state.name, state.uidvalidity, state.last_uid = folder, uidvalidity, boundary - 1
    state.updated_at = now
    row = get_history(session, mailbox_id, role)
    if row is None:
        row = HistoryImport(mailbox_id=mailbox_id, role=role)
        session.add(row)
    row.folder, row.uidvalidity, row.boundary_uid, row.cursor_uid = folder, uidvalidity, \
        boundary, 0
    row.since, row.total, row.done = since, total, 0
    row.started_at = row.updated_at = now
    row.finished_at = None if total else now


def restart_history(session: Session, mailbox_id: int, role: str, since: datetime | None,
                    total: int, now: datetime) -> bool:
    """Import a folder's history again from its start, e.g. older mail left out by
    `import_since` (what is stored already is skipped by Message-ID). False when the
    folder has no history lane (maild saw it empty, or before this lane existed)."""
    row = get_history(session, mailbox_id, role)
    if row is None:
        return False
    row.cursor_uid, row.since, row.total, row.done = 0, since, total, 0
    row.started_at = row.updated_at = now
    row.finished_at = None if total else now
    return True


def advance_history(session: Session, mailbox_id: int, role: str, upto: int, count: int,
                    now: datetime) -> None:
    """History UIDs up to `upto` are stored (`count` more messages): in the batch's
    transaction, so the cursor never runs ahead of the mail or behind it."""
    row = get_history(session, mailbox_id, role)
    if row is None:
        return
    row.cursor_uid = max(row.cursor_uid, upto)
    row.done = min(row.total, row.done + count) if row.total else row.done + count
    row.updated_at = now
    if row.cursor_uid >= row.boundary_uid - 1 and row.finished_at is None:
        row.finished_at, row.done = now, row.total


def drop_history(session: Session, mailbox_id: int, role: str) -> None:
    """The folder's UIDVALIDITY changed: its history lane starts again from a new split."""
    row = get_history(session, mailbox_id, role)
    if row is not None:
        session.delete(row)


def history_progress(session: Session) -> list[HistoryProgress]:
    """Every folder's history import, finished or not, for display and health checks."""
    rows = session.execute(select(HistoryImport, Mailbox.address).join(
        Mailbox, Mailbox.id == HistoryImport.mailbox_id).order_by(HistoryImport.id)).all()
    return [HistoryProgress(address, h.role, h.folder, h.done, h.total, h.started_at,
                            h.updated_at, h.finished_at is not None) for h, address in rows]


def importing_summary(session: Session) -> str | None:
    """"importing history: 42%" over all unfinished folders, or None when none is."""
    pending = [p for p in history_progress(session) if not p.finished]
    if not pending:
        return None
    done, total = sum(p.done for p in pending), sum(p.total for p in pending)
    pct = min(99, int(done * 100 / total)) if total else 0
    return f"importing history: {pct}% ({done:,} of {total:,} messages)"


def unknown_ids(session: Session, mailbox_id: int, ids: Iterable[str]) -> list[str]:
    """Those of `ids` this mailbox has no message for, in their given order."""
    wanted = list(dict.fromkeys(i for i in ids if i))
    if not wanted:
        return []
    known = set(session.scalars(select(MessageRow.message_id).where(
        MessageRow.mailbox_id == mailbox_id, MessageRow.message_id.in_(wanted))))
    return [i for i in wanted if i not in known]


BULK_TABLES = ("messages", "tickets", "customers", "events")


def refresh_statistics(session: Session) -> bool:
    """PostgreSQL: ANALYZE the tables a history import grows, so the planner knows their
    size. Without it (autovacuum off, or behind a fast bulk load) it plans for the empty
    tables of the start: the batch's Message-ID lookup read every message of the mailbox
    (0.36 s per batch at 700,000 messages). False on other databases (nothing done)."""
    if session.get_bind().dialect.name != "postgresql":
        return False
    session.execute(text(f"ANALYZE {', '.join(BULK_TABLES)}"))
    return True
