"""The history lane: a big mailbox's old mail, imported behind live mail.

On a folder's first cycle (no checkpoint, or UIDVALIDITY changed) the poller asks
`split` where live mail starts: the first UID that arrived within
`autoreply.max_age_hours` (or the folder's UIDNEXT). Mail from there on is the
live lane, handled like any new mail from the first cycle; mail below it is
history, imported here oldest first in chunks of at most `history.chunk_seconds`
between live passes, with its own checkpoint (`maild.store.history`) committed
with each batch. History mail is threaded and stored with the history handlers
(rules: priority, tags, SLA policy; no auto-reply, suggestion, draft or command),
and parsed and routed in worker processes (`maild.parsepool`) while this process
fetches and writes.

Threading stays right while history is behind: before a live batch is stored,
the messages it refers to (In-Reply-To, References) that are not stored yet are
looked up in the history range with IMAP SEARCH HEADER Message-ID and stored
first (`prefetch`), so a live reply joins its conversation's ticket; history
reaching them later skips them by Message-ID.

This module talks IMAP through MailboxClient and stores through the Ingestor;
the SQL lives in `maild.store.history`.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.parser import BytesHeaderParser
from email.policy import compat32

from maild.config import parse_since
from maild.ingest import BatchResult, IngestItem, Ingestor
from maild.mailbox import FetchedMessage, FolderStatus, MailboxClient
from maild.parse import extract_ids
from maild.parsepool import ParsedBatch, ParsePool, Routing
from maild.store import history as store

log = logging.getLogger("maild.history")

PREFETCH_MAX_IDS = 50  # referenced Message-IDs looked up per live batch
FIRST_BATCH = 50  # history messages in the first batch, before a rate is measured
MIN_BATCH = 10
ANALYZE_FIRST = 5_000  # history messages stored before the first ANALYZE; then every 4x


@dataclass(frozen=True)
class _Ahead:
    """A history batch fetched and handed to the parse workers, not stored yet."""

    uidvalidity: int
    items: list[IngestItem]
    upto: int  # the folder's history cursor once it is stored
    future: Future[ParsedBatch]


@dataclass(frozen=True)
class Pending:
    """A folder's unfinished history import, as read at the start of a chunk."""

    role: str
    folder: str
    uidvalidity: int
    boundary: int
    cursor: int
    since: datetime | None
    done: int
    total: int


class HistoryLane:
    def __init__(self, ingestor: Ingestor, *, max_age: timedelta,
                 import_since: str | None = None, chunk_seconds: float = 0.5,
                 batch_size: int = 200, pool: ParsePool | None = None,
                 progress_seconds: float = 30.0) -> None:
        self.ingestor = ingestor
        self.max_age = max_age
        self.import_since = import_since
        self.chunk_seconds = chunk_seconds
        self.batch_size = batch_size
        self.pool = pool or ParsePool(ingestor.limits)
        self.progress_seconds = progress_seconds
        self._rate = _Rate()
        self._last_report = 0.0
        self.result = BatchResult()  # what the last `chunk` stored
        self._size = min(batch_size, FIRST_BATCH)  # history batch size, adapted as it runs
        self._budget = chunk_seconds  # the running chunk's
        self.ran = False  # did the last `chunk` import anything (then look for new mail now)
        self._ahead: dict[str, _Ahead] = {}  # by folder role: the next batch, being parsed
        self._stored = 0  # history messages stored by this process
        self._analyze_at = ANALYZE_FIRST

    # -- the split, on a folder's first cycle ------------------------------------------

    def split(self, client: MailboxClient, role: str, status: FolderStatus) -> int:
        """Record where `status`'s folder's live lane starts; returns the live lane's
        checkpoint (the UID just below it). 0: no history, every message is live."""
        if status.exists == 0:
            return 0
        now = self.ingestor.clock.now()
        cutoff = now - self.max_age
        candidates = client.uids_between(1, max(status.uidnext - 1, 1), cutoff - timedelta(days=1))
        arrived = client.internaldates(candidates)
        recent = [u for u in candidates if (arrived.get(u) or now) >= cutoff]
        boundary = min(recent) if recent else status.uidnext
        if boundary <= 1:
            return 0
        since = parse_since(self.import_since, now) if self.import_since else None
        if since is not None:
            total = len(client.uids_between(1, boundary - 1, since))
        else:  # all UIDs under the boundary: those in the folder less the live ones
            total = max(0, status.exists - len(client.uids_above(boundary - 1)))
        with self.ingestor.sessions.begin() as session:
            store.start_history(session, self.ingestor.mailbox_id(), role, status.name,
                                status.uidvalidity, boundary, since, total, now)
        log.info("%s: %s: %d message(s) of history under UID %d%s imported behind live "
                 "mail (from UID %d on)", self.ingestor.address, status.name, total, boundary,
                 f" since {since.date()}" if since else "", boundary)
        return boundary - 1

    # -- chunks between live passes ----------------------------------------------------

    def pending(self) -> list[Pending]:
        mailbox_id = self.ingestor.mailbox_id()
        with self.ingestor.sessions() as session:
            rows = [store.get_history(session, mailbox_id, role) for role in ("inbox", "sent")]
            return [Pending(r.role, r.folder, r.uidvalidity, r.boundary_uid, r.cursor_uid,
                            r.since, r.done, r.total)
                    for r in rows if r is not None and r.finished_at is None]

    def chunk(self, client: MailboxClient, progress: Callable[[str], None] | None = None,
              seconds: float | None = None) -> bool:
        """Import history for up to `seconds` (default chunk_seconds); True while some is
        left."""
        self._budget = self.chunk_seconds if seconds is None else seconds
        deadline = time.monotonic() + self._budget
        self.result = BatchResult()
        pending = self.pending()
        self.ran = bool(pending)
        for p in pending:
            if time.monotonic() >= deadline:
                break
            self._folder_chunk(client, p, deadline)
        left = self.pending()
        self._report(left, progress)
        if not left:
            self.pool.close()  # the workers' memory goes back once history is in
        return bool(left)

    def _folder_chunk(self, client: MailboxClient, p: Pending, deadline: float) -> None:
        """Store history batches of `p`'s folder until `deadline`, each one parsed in the
        workers while the one before it is written. The batch handed to the workers
        last is not waited for: it stays ahead (`_Ahead`), parsed while live mail is
        handled, and is the first stored by the next chunk; the checkpoint moves only
        as batches are stored, so a crash fetches it again."""
        status = client.select(p.folder)
        ahead = self._ahead.pop(p.role, None)
        if status.uidvalidity != p.uidvalidity:
            return  # the live pass of the next cycle splits the folder afresh
        if ahead is not None and (ahead.uidvalidity != p.uidvalidity or ahead.upto <= p.cursor):
            ahead = None  # from before a restart of this folder's history
        routing = Routing(p.role, self.ingestor.routing)
        for items, upto in self._batches(client, p, ahead.upto if ahead else p.cursor):
            nxt = _Ahead(p.uidvalidity, items, upto,
                         self.pool.submit([i.raw for i in items], routing))
            if ahead is not None:  # parsed meanwhile: write it while `nxt` is parsed
                self._store(p, ahead)
            ahead = nxt
            if time.monotonic() >= deadline:
                self._ahead[p.role] = ahead
                return
        if ahead is not None:  # the folder's last batch
            self._store(p, ahead)

    def _batches(self, client: MailboxClient, p: Pending, after: int
                 ) -> Iterator[tuple[list[IngestItem], int]]:
        """(items, cursor after them) from UID `after` up, one fetch per batch of
        `_size` (adapted to the measured rate, so that one batch fits in a chunk)."""
        last = p.boundary - 1
        if p.since is not None:
            uids = client.uids_between(after + 1, last, p.since) if after < last else []
            i = 0
            while i < len(uids):
                chunk = uids[i:i + self._size]
                i += len(chunk)
                upto = last if i >= len(uids) else chunk[-1]
                yield _items(next(client.fetch(chunk, len(chunk)), [])), upto
            if not uids and after < last:
                yield [], last
            return
        lo = after + 1
        while lo <= last:
            hi = min(lo + self._size - 1, last)
            yield _items(client.fetch_range(lo, hi)), hi
            lo = hi + 1

    def _store(self, p: Pending, ahead: _Ahead) -> BatchResult:
        started = time.monotonic()
        items = ahead.items
        batch = self.pool.result(ahead.future, [i.raw for i in items])
        res = self.ingestor.ingest_batch(p.role, p.folder, p.uidvalidity, items,
                                         lane="history", upto=ahead.upto, parsed=batch.parsed,
                                         routes=batch.routes)
        self._rate.add(len(items))
        if items:  # a batch should take at most half a chunk: live mail waits for it
            per_message = max(time.monotonic() - started, 1e-3) / len(items)
            self._size = max(MIN_BATCH, min(self.batch_size,
                                            int(self._budget / 2 / per_message)))
        for name in ("stored", "duplicates", "quarantined", "parse_errors", "new_tickets"):
            setattr(self.result, name, getattr(self.result, name) + getattr(res, name))
        self._stored += len(items)
        if self._stored >= self._analyze_at:
            self._analyze_at = self._stored * 4
            self._refresh_statistics()
        return res

    def _refresh_statistics(self) -> None:
        """Tell the database how big its tables have grown (at 5,000, 20,000, 80,000 ...
        messages stored): a bulk load outruns autovacuum, and a server may run without it."""
        started = time.monotonic()
        with self.ingestor.sessions.begin() as session:
            if store.refresh_statistics(session):
                log.info("%s: history: database statistics refreshed after %d message(s) "
                         "(ANALYZE, %.1f s)", self.ingestor.address, self._stored,
                         time.monotonic() - started)

    # -- progress ------------------------------------------------------------------------

    def _report(self, left: Sequence[Pending], progress: Callable[[str], None] | None) -> None:
        now = time.monotonic()
        every = 1.0 if progress is not None else self.progress_seconds
        if left and now - self._last_report < every:
            return
        self._last_report = now
        line = self.progress_line(left)
        if line is None:
            return
        if progress is not None:
            progress(line)
        else:
            log.info("%s", line)

    def progress_line(self, left: Sequence[Pending]) -> str | None:
        """"history support@x: 4,200/10,000 (42%), 980 msg/s, about 6 s left"."""
        if not left:
            if not self._rate.count:
                return None
            count, self._rate = self._rate.count, _Rate()
            return f"history {self.ingestor.address}: done ({count:,} message(s) this run)"
        done, total = sum(p.done for p in left), sum(p.total for p in left)
        pct = min(99, int(done * 100 / total)) if total else 0
        rate = self._rate.per_second()
        eta = f", about {_duration((total - done) / rate)} left" if rate > 0 else ""
        return (f"history {self.ingestor.address}: {done:,}/{total:,} ({pct}%), "
                f"{rate:,.0f} msg/s{eta}")

    # -- threading while history is behind ---------------------------------------------

    def prefetch(self, client: MailboxClient, raws: Sequence[bytes]) -> bool:
        """Store the history messages `raws` refer to and that are not stored yet, before
        `raws` are; True if it selected other folders (the caller selects its own again)."""
        pend = self.pending()
        if not pend:
            return False
        wanted = referenced_ids(raws)
        if not wanted:
            return False
        with self.ingestor.sessions() as session:
            missing = store.unknown_ids(session, self.ingestor.mailbox_id(), wanted)
        missing = missing[:PREFETCH_MAX_IDS]
        if not missing:
            return False
        found: list[tuple[Pending, FetchedMessage]] = []
        for p in pend:
            client.select(p.folder)
            uids = [u for u in client.search_message_ids(missing, p.boundary) if u > p.cursor]
            for batch in client.fetch(uids, self.batch_size):
                found += [(p, m) for m in batch]
        found.sort(key=lambda pm: (pm[1].internaldate or datetime.max.replace(
            tzinfo=self.ingestor.clock.now().tzinfo), pm[1].uid))
        for p, group in itertools.groupby(found, key=lambda pm: pm[0]):
            items = _items([m for _, m in group])
            self.ingestor.ingest_batch(p.role, p.folder, p.uidvalidity, items, lane="prefetch")
        if found:
            log.info("%s: stored %d history message(s) that live mail refers to, ahead of "
                     "the history import", self.ingestor.address, len(found))
        return True

    def restart(self, client: MailboxClient, role: str, folder: str,
                since: datetime | None) -> int | None:
        """Import a folder's history again from its first UID, only what arrived on or
        after `since` (None: all of it), e.g. the older mail `import_since` left out;
        what is stored already is skipped by Message-ID. Returns how many messages the
        history lane now holds, None if the folder has none (all its mail was live)."""
        mailbox_id = self.ingestor.mailbox_id()
        with self.ingestor.sessions() as session:
            row = store.get_history(session, mailbox_id, role)
            boundary = row.boundary_uid if row is not None else None
        if boundary is None:
            return None
        status = client.select(folder)
        if since is not None:
            total = len(client.uids_between(1, boundary - 1, since))
        else:
            total = max(0, status.exists - len(client.uids_above(boundary - 1)))
        self._ahead.pop(role, None)
        with self.ingestor.sessions.begin() as session:
            store.restart_history(session, mailbox_id, role, since, total,
                                  self.ingestor.clock.now())
        return total

    def close(self) -> None:
        self._ahead.clear()  # not stored: the checkpoint is before them
        self.pool.close()


def referenced_ids(raws: Sequence[bytes]) -> list[str]:
    """The Message-IDs in the In-Reply-To and References headers of `raws`."""
    parser = BytesHeaderParser(policy=compat32)
    out: list[str] = []
    for raw in raws:
        head = parser.parsebytes(raw[:65536])
        for name in ("In-Reply-To", "References"):
            for value in head.get_all(name, []):
                out.extend(extract_ids(str(value)))
    return list(dict.fromkeys(out))


def _items(msgs: Sequence[FetchedMessage]) -> list[IngestItem]:
    return [IngestItem(m.uid, m.raw, m.internaldate) for m in msgs]


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class _Rate:
    """Messages per second over this process's history import so far."""

    def __init__(self) -> None:
        self.count = 0
        self.started: float | None = None

    def add(self, n: int) -> None:
        if self.started is None:
            self.started = time.monotonic()
        self.count += n

    def per_second(self) -> float:
        if self.started is None:
            return 0.0
        elapsed = time.monotonic() - self.started
        return self.count / elapsed if elapsed > 0.5 else 0.0
