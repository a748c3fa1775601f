"""Log lines about what a transaction wrote, written only once it is committed.

`log_after_commit` keeps the line on the session instead of writing it: the line
is written when the session's outermost transaction commits, and dropped when that
transaction, or the savepoint the line was made in, rolls back (or the session
closes without committing). So a log line never names a ticket that was rolled
back, moved or deleted before the commit (issue 15: "ticket #9 opened" for a
command mail that was stored on #4). The caller passes the values it will commit:
compute them when nothing will change them any more.

Listens to SQLAlchemy's Session events (installed once, at the first line kept);
never touches the database itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

_PENDING = "maild.after_commit.lines"
_COMMITTED = "maild.after_commit.committed"


@dataclass(frozen=True)
class _Line:
    transaction: SessionTransaction
    logger: logging.Logger
    level: int
    msg: str
    args: tuple[Any, ...]


def log_after_commit(session: Session, logger: logging.Logger, level: int, msg: str,
                     *args: Any) -> None:
    """`logger.log(level, msg, *args)` once the session's transaction has committed."""
    if not logger.isEnabledFor(level):
        return
    transaction = session.get_nested_transaction() or session.get_transaction()
    if transaction is None:  # no transaction: nothing of this is pending
        logger.log(level, msg, *args)
        return
    _install()
    session.info.setdefault(_PENDING, []).append(_Line(transaction, logger, level, msg, args))


def _install() -> None:
    if not event.contains(Session, "after_transaction_end", _ended):
        event.listen(Session, "after_commit", _committed)
        event.listen(Session, "after_transaction_end", _ended)


def _committed(session: Session) -> None:
    session.info[_COMMITTED] = True  # SQLAlchemy ends the same transaction right after


def _ended(session: Session, transaction: SessionTransaction) -> None:
    committed = session.info.pop(_COMMITTED, False)
    lines: list[_Line] = session.info.get(_PENDING, [])
    if not lines:
        return
    if transaction.parent is None:  # the outermost: write them all, or none
        session.info[_PENDING] = []
        for line in lines if committed else ():
            line.logger.log(line.level, line.msg, *line.args)
    elif not committed:  # a savepoint rolled back: what was said inside it is void
        session.info[_PENDING] = [x for x in lines if not _within(x.transaction, transaction)]


def _within(inner: SessionTransaction | None, outer: SessionTransaction) -> bool:
    while inner is not None:
        if inner is outer:
            return True
        inner = inner.parent
    return False
