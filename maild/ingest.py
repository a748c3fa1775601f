"""Store fetched messages as tickets: parse, de-duplicate, thread, record.

One database transaction per fetched batch, one SAVEPOINT per message: the
folder checkpoint (UIDVALIDITY, last UID) advances in the same transaction as
the messages it covers, so a crash loses nothing and repeats nothing. A message
that fails is quarantined raw with its error and the batch goes on; a failing
database (OperationalError: locked, timed out, gone) fails the whole batch
instead, so good mail is never quarantined for it and the batch is retried.
The savepoints cost two statements and a flush per message, so a batch is first
stored without them and only stored again with them when a message fails. New
rows get their ids before the INSERT (`maild.store.ids`), so without savepoints
the batch's rows are inserted together at the next flush, not one by one; a row
refused there (a handler's bad row, say) is a message's failure like any other:
the batch is stored again message by message and only its message quarantined.
After a message is stored, the registered handlers (rules, auto-replies,
drafts) run in the same transaction. Messages are parsed before the transaction opens, and
the writer's lookups for the whole batch are made once (`TicketWriter.prepare`).
This module does no IMAP or SMTP I/O itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from maild.calendar import BusinessCalendar
from maild.classify import ClassifyContext
from maild.clock import Clock
from maild.parse import DEFAULT_LIMITS, ParsedMessage, ParseLimits, parse_message
from maild.routing import Route, RouteContext
from maild.store import repo
from maild.store.bulk import BulkRows
from maild.store.history import advance_history
from maild.store.models import FolderState, Quarantine
from maild.tickets import Incoming, StoredMessage, TicketWriter, log_stored

log = logging.getLogger("maild.ingest")
T = TypeVar("T")


@dataclass(frozen=True)
class IngestItem:
    uid: int | None
    raw: bytes
    internaldate: datetime | None


@dataclass
class BatchResult:
    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    parse_errors: int = 0
    new_tickets: int = 0
    last_uid: int = 0
    ticket_ids: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class _Lane:
    name: str  # live | history | prefetch
    upto: int | None = None  # history: the cursor after this batch
    routes: tuple[Route | None, ...] = ()  # routed by the parse workers, in order


class _MessageFailed(Exception):
    """A message failed in a batch stored without savepoints: redo it with them."""

    def __init__(self, uid: int | None) -> None:
        # "at": a query of that message may have written (and failed on) an earlier
        # message's rows; None: a row was refused when the batch's rows were written
        self.where = f"at uid={uid}" if uid is not None else "a row refused at the batch's flush"
        super().__init__(self.where)
        self.uid = uid


class MessageHandler(Protocol):
    """Runs after a message is stored, inside the same transaction."""

    name: str

    def handle(self, session: Session, stored: StoredMessage, parsed: ParsedMessage) -> None: ...


class Ingestor:
    def __init__(self, sessions: sessionmaker[Session], clock: Clock, mailbox_address: str,
                 *, own_addresses: Sequence[str] = (), window_days: int = 7,
                 handlers: Sequence[MessageHandler] = (),
                 calendar: BusinessCalendar | None = None,
                 limits: ParseLimits = DEFAULT_LIMITS,
                 reopen_window_days: int | None = None,
                 routing: RouteContext | None = None,
                 history_handlers: Sequence[MessageHandler] = ()) -> None:
        self.reopen_window = timedelta(days=reopen_window_days) \
            if reopen_window_days else None
        self.calendar = calendar
        self.limits = limits
        self.sessions = sessions
        self.clock = clock
        self.address = mailbox_address.lower()
        self.own = frozenset(a.lower() for a in (*own_addresses, mailbox_address))
        self.routing = routing or RouteContext(self.own, ClassifyContext(own_addresses=self.own))
        self.window = timedelta(days=window_days)
        self.handlers = tuple(handlers)
        self.history_handlers = tuple(history_handlers)  # history: no reply, draft, command

    def mailbox_id(self) -> int:
        with self.sessions.begin() as session:
            return repo.get_or_create_mailbox(session, self.address, self.clock.now()).id

    def checkpoint(self, role: str) -> FolderState | None:
        with self.sessions() as session:
            return repo.get_folder_state(session, self.mailbox_id(), role)

    def ingest_batch(self, role: str, folder: str, uidvalidity: int | None,
                     items: Sequence[IngestItem], highest_modseq: int | None = None, *,
                     lane: str = "live", upto: int | None = None,
                     parsed: Sequence[ParsedMessage | Exception] | None = None,
                     routes: Sequence[Route | None] = ()) -> BatchResult:
        """Store `items` from `folder` (role inbox|sent) and advance its checkpoint.

        `lane`: "live" advances the folder's checkpoint; "history" the folder's history
        cursor to `upto` (and its progress) instead; "prefetch" (history mail a live reply
        refers to, `maild.history`) advances neither. History and prefetch run the history
        handlers. `parsed`: the items already parsed (in worker processes), in order;
        `routes`: their routes, if the workers routed them too (None: route it here).
        First without a savepoint per message (a savepoint costs two statements and a
        flush of its own); if one message fails, that attempt rolls back whole and the
        batch is stored again with a savepoint per message, quarantining the failure."""
        if parsed is None:
            parsed = [self._parse(item) for item in items]
        lane_ = _Lane(lane, upto, tuple(routes))
        try:
            return self._store(role, folder, uidvalidity, items, parsed, highest_modseq,
                               isolate=False, lane=lane_)
        except _MessageFailed as failed:
            log.warning("%s: storing failed (%s: %s); batch of %d rolled back, storing "
                        "it again message by message", folder, failed.where, failed.__cause__,
                        len(items))
            return self._store(role, folder, uidvalidity, items, parsed, highest_modseq,
                               isolate=True, lane=lane_)

    def _store(self, role: str, folder: str, uidvalidity: int | None,
               items: Sequence[IngestItem], parsed: Sequence[ParsedMessage | Exception],
               highest_modseq: int | None, *, isolate: bool, lane: _Lane) -> BatchResult:
        result = BatchResult()
        with self.sessions.begin() as session:
            mailbox = repo.get_or_create_mailbox(session, self.address, self.clock.now())
            writer = TicketWriter(session, mailbox.id, self.own, self.window, self.calendar,
                                  self.reopen_window, self.routing)
            writer.routed(role, parsed, lane.routes)
            self._prepare(session, writer, role, items, parsed)
            handlers = self.handlers if lane.name == "live" else self.history_handlers
            if lane.name != "live" and not isolate:  # nothing reads their rows back
                writer.bulk = BulkRows()
            for item, msg in zip(items, parsed, strict=True):
                if isolate:
                    self._one(session, writer, role, folder, uidvalidity, item, msg, result,
                              handlers)
                else:
                    self._one_unisolated(session, writer, role, folder, uidvalidity, item, msg,
                                         result, handlers)
                result.last_uid = max(result.last_uid, item.uid or 0)
            if not isolate:
                self._flush_batch(session, writer.bulk)
            if lane.name == "history":
                advance_history(session, mailbox.id, role, lane.upto or result.last_uid,
                                len(items), self.clock.now())
            elif uidvalidity is not None and lane.name == "live":
                self._advance(session, mailbox.id, role, folder, uidvalidity,
                              result.last_uid, highest_modseq)
        return result

    def rehearse(self, role: str, item: IngestItem,
                 look: Callable[[Session, StoredMessage | None], T]) -> T:
        """Store `item` exactly as `ingest_batch` would, handlers and all, let `look` read
        the result inside the transaction, then roll everything back: the dry run
        (`maild rules test`) takes ingest's own path with storage switched off. Nothing
        is sent either way: ingest only queues mail, and the queue is rolled back too."""
        parsed = self._parse(item)
        with self.sessions() as session:
            try:
                mailbox = repo.get_or_create_mailbox(session, self.address, self.clock.now())
                writer = TicketWriter(session, mailbox.id, self.own, self.window, self.calendar,
                                      self.reopen_window, self.routing)
                self._prepare(session, writer, role, [item], [parsed])
                stored = self._add(session, writer, role, "(dry run)", None, item, parsed,
                                   self.handlers)
                session.flush()
                return look(session, stored)
            finally:
                session.rollback()

    def _flush_batch(self, session: Session, bulk: BulkRows | None = None) -> None:
        """Write the rows of a batch stored without savepoints (unless a query already
        did), then its `bulk` rows. A row the database refuses here is some message's
        failure, not the database's: the batch is stored again message by message to
        find it."""
        try:
            session.flush()
            if bulk is not None:
                bulk.write(session)
        except OperationalError:
            raise
        except Exception as exc:
            raise _MessageFailed(None) from exc

    def _parse(self, item: IngestItem) -> ParsedMessage | Exception:
        try:
            return parse_message(item.raw, self.limits)
        except Exception as exc:  # parse_message never raises; if it did: quarantine
            return exc

    def _prepare(self, session: Session, writer: TicketWriter, role: str,
                 items: Sequence[IngestItem], parsed: Sequence[ParsedMessage | Exception]
                 ) -> None:
        """Batch the writer's lookups; if that fails, it asks per message instead."""
        batch = [Incoming(msg, role, item.internaldate, item.raw)
                 for item, msg in zip(items, parsed, strict=True)
                 if not isinstance(msg, Exception)]
        try:
            with session.begin_nested():
                writer.prepare(batch, self.clock.now())
        except OperationalError:
            raise  # the database failed (locked, gone): roll the batch back, retry it
        except Exception:  # e.g. a key the database refuses: per message, it quarantines one
            log.exception("batch lookups failed; looking up message by message")
            writer.batch, writer.lookup = None, repo.SqlThreadLookup(session, writer.mailbox_id)

    def _one(self, session: Session, writer: TicketWriter, role: str, folder: str,
             uidvalidity: int | None, item: IngestItem, parsed: ParsedMessage | Exception,
             result: BatchResult, handlers: Sequence[MessageHandler]) -> None:
        """Store one message in its own savepoint; quarantine it if it fails."""
        try:
            with session.begin_nested():
                stored = self._add(session, writer, role, folder, uidvalidity, item, parsed,
                                   handlers)
        except OperationalError:
            raise  # the database, not the message, failed: the whole batch rolls back
        except Exception as exc:
            log.exception("quarantined uid=%s folder=%s: %s", item.uid, folder, exc)
            writer.ids.rolled_back()
            self._quarantine(session, writer.mailbox_id, role, folder, uidvalidity, item, exc)
            result.quarantined += 1
            return
        self._count(result, stored, parsed)

    def _one_unisolated(self, session: Session, writer: TicketWriter, role: str, folder: str,
                        uidvalidity: int | None, item: IngestItem,
                        parsed: ParsedMessage | Exception, result: BatchResult,
                        handlers: Sequence[MessageHandler]) -> None:
        """Store one message in the batch's transaction; if it fails, the batch is redone."""
        try:
            stored = self._add(session, writer, role, folder, uidvalidity, item, parsed,
                               handlers)
        except OperationalError:
            raise
        except Exception as exc:
            raise _MessageFailed(item.uid) from exc
        self._count(result, stored, parsed)

    def _add(self, session: Session, writer: TicketWriter, role: str, folder: str,
             uidvalidity: int | None, item: IngestItem, parsed: ParsedMessage | Exception,
             handlers: Sequence[MessageHandler]) -> StoredMessage | None:
        """Store the message and run the handlers; None for a duplicate."""
        if isinstance(parsed, Exception):
            raise parsed
        if parsed.parse_error:
            log.warning("uid=%s folder=%s %s: %s", item.uid, folder, parsed.message_id,
                        parsed.parse_error)
        stored = writer.add(parsed, item.raw, role=role, folder=folder, uidvalidity=uidvalidity,
                            uid=item.uid, internaldate=item.internaldate, now=self.clock.now())
        if stored is not None:
            for handler in handlers:
                handler.handle(session, stored, parsed)
            log_stored(session, stored)  # where it ended, written once committed
        return stored

    @staticmethod
    def _count(result: BatchResult, stored: StoredMessage | None,
               parsed: ParsedMessage | Exception) -> None:
        if stored is None:
            result.duplicates += 1
            return
        assert not isinstance(parsed, Exception)
        result.stored += 1
        result.parse_errors += parsed.parse_error is not None
        result.new_tickets += stored.new_ticket
        result.ticket_ids.append(stored.ticket.id)

    def _quarantine(self, session: Session, mailbox_id: int, role: str, folder: str,
                    uidvalidity: int | None, item: IngestItem, exc: Exception) -> None:
        with session.begin_nested():
            session.add(Quarantine(mailbox_id=mailbox_id, role=role, folder=folder,
                                   uidvalidity=uidvalidity, uid=item.uid,
                                   error=f"{type(exc).__name__}: {exc}"[:2000], raw=item.raw,
                                   internaldate=item.internaldate, at=self.clock.now()))

    def store_one(self, role: str, folder: str, uidvalidity: int | None, item: IngestItem,
                  then: Callable[[Session, StoredMessage | None], None]) -> StoredMessage | None:
        """Store one message outside any IMAP batch (a quarantined message retried): the
        same parsing, threading and handlers as a batch, then `then(session, stored)`,
        all in one transaction. A failure raises and rolls back everything: nothing is
        quarantined again and no checkpoint moves. None for a duplicate."""
        parsed = self._parse(item)
        with self.sessions.begin() as session:
            mailbox = repo.get_or_create_mailbox(session, self.address, self.clock.now())
            writer = TicketWriter(session, mailbox.id, self.own, self.window, self.calendar,
                                  self.reopen_window, self.routing)
            stored = self._add(session, writer, role, folder, uidvalidity, item, parsed,
                               self.handlers)
            then(session, stored)
        return stored

    def _advance(self, session: Session, mailbox_id: int, role: str, folder: str,
                 uidvalidity: int, last_uid: int, modseq: int | None) -> None:
        state = repo.get_folder_state(session, mailbox_id, role)
        now = self.clock.now()
        if state is None:
            state = FolderState(mailbox_id=mailbox_id, role=role, name=folder,
                                uidvalidity=uidvalidity, last_uid=0, updated_at=now)
            session.add(state)
        if state.uidvalidity != uidvalidity:
            log.warning("%s: UIDVALIDITY changed %s -> %s; rescanned, de-duplicated by "
                        "Message-ID", folder, state.uidvalidity, uidvalidity)
            state.uidvalidity, state.last_uid = uidvalidity, 0
        state.name = folder
        state.last_uid = max(state.last_uid, last_uid)
        state.highest_modseq = modseq if modseq is not None else state.highest_modseq
        state.updated_at = now
