"""Parse fetched mail in worker processes while the main process fetches and writes.

History import is bound by parsing (mail-parser is pure Python): `ParsePool`
hands each batch's raw bytes to a process pool and gives back, in order, one
`ParsedMessage` (or the exception, as text) per message. With one worker, or if
the pool breaks, it parses in the calling process instead: slower, never lost.
Workers also guess each message's language (fastText, a pure function of the
text) and, given the folder's role and a `RouteContext`, route it (classify who
wrote it: `maild.routing`, pure too); the writer would otherwise do both in its
own process, which is the import's bottleneck. This module knows nothing about
IMAP, tickets or the database.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace

from maild.language import detect_language, own_words
from maild.parse import DEFAULT_LIMITS, ParsedMessage, ParseLimits, parse_message
from maild.routing import Route, RouteContext, route_message

log = logging.getLogger("maild.parsepool")

Parsed = ParsedMessage | Exception


@dataclass(frozen=True)
class Routing:
    """Route each parsed message as mail of folder role `role` (inbox|sent)."""

    role: str
    context: RouteContext


@dataclass(frozen=True)
class ParsedBatch:
    """One batch, in order: each message parsed (or the exception), and its route when
    the batch was submitted with a `Routing` (else `routes` is empty)."""

    parsed: list[Parsed]
    routes: list[Route | None] = field(default_factory=list)


def watch_parent(parent: int, every: float = 1.0) -> None:
    """In a worker: exit when the process that started it is gone. A maild killed with
    SIGKILL cannot shut its pool down, and its workers would otherwise wait forever."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(0)
    threading.Thread(target=watch, name="watch-parent", daemon=True).start()


def parse_all(raws: Sequence[bytes], limits: ParseLimits = DEFAULT_LIMITS,
              language: bool = False) -> list[Parsed]:
    """Parse each message (with `language`: and guess its language, `ParsedMessage.
    language`); an exception (parse_message never raises; if it did) is kept in its
    place as a RuntimeError naming it, so the writer quarantines that one."""
    out: list[Parsed] = []
    for raw in raws:
        try:
            parsed = parse_message(raw, limits)
            if language:
                parsed = replace(parsed, language=detect_language(own_words(parsed.text), ""))
            out.append(parsed)
        except Exception as exc:
            out.append(RuntimeError(f"{type(exc).__name__}: {exc}"))
    return out


def parse_batch(raws: Sequence[bytes], limits: ParseLimits = DEFAULT_LIMITS,
                language: bool = False, routing: Routing | None = None) -> ParsedBatch:
    """`parse_all`, and with `routing` each message's route (None where it failed: the
    writer routes or quarantines that one itself)."""
    parsed = parse_all(raws, limits, language)
    if routing is None:
        return ParsedBatch(parsed)
    routes: list[Route | None] = []
    for raw, msg in zip(raws, parsed, strict=True):
        try:
            routes.append(None if isinstance(msg, Exception) else
                          route_message(msg, routing.role, routing.context, raw))
        except Exception:
            routes.append(None)
    return ParsedBatch(parsed, routes)


def _pickles(routing: Routing | None) -> bool:
    """Whether `routing` can go to a worker (a RouteContext built with a lambda cannot)."""
    if routing is None:
        return False
    try:
        pickle.dumps(routing)
    except (pickle.PicklingError, AttributeError, TypeError):
        return False
    return True


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        os.cpu_count() or 1


class ParsePool:
    """Worker processes for parsing, started on first use and stopped by `close`."""

    def __init__(self, limits: ParseLimits = DEFAULT_LIMITS, workers: int = 0) -> None:
        self.limits = limits
        self.workers = workers or default_workers()
        self._pool: ProcessPoolExecutor | None = None

    def submit(self, raws: Sequence[bytes], routing: Routing | None = None
               ) -> Future[ParsedBatch]:
        """Parse `raws` in a worker (and route them, with a `routing` that pickles; the
        writer routes the others itself)."""
        if self.workers > 1:
            try:
                return self._executor().submit(parse_batch, list(raws), self.limits, True,
                                               routing if _pickles(routing) else None)
            except (BrokenProcessPool, RuntimeError, OSError) as exc:
                self._broken(exc)
        done: Future[ParsedBatch] = Future()
        done.set_result(ParsedBatch(parse_all(raws, self.limits)))
        return done

    def result(self, future: Future[ParsedBatch], raws: Sequence[bytes]) -> ParsedBatch:
        """The parsed batch; parsed here if its worker died."""
        try:
            return future.result()
        except (BrokenProcessPool, OSError) as exc:
            self._broken(exc)
            return ParsedBatch(parse_all(raws, self.limits))

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn, not fork: the daemon has threads (pollers, scheduler) and a fork
            # would copy their locks mid-use
            self._pool = ProcessPoolExecutor(self.workers,
                                             mp_context=multiprocessing.get_context("spawn"),
                                             initializer=watch_parent, initargs=(os.getpid(),))
        return self._pool

    def _broken(self, exc: BaseException) -> None:
        log.warning("parse workers failed (%s); parsing in the main process from now on", exc)
        self.close()
        self.workers = 1

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
