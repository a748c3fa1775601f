"""Strings longer than their column are clipped before they are written, with a log line.

Mail headers have no length limit that senders respect, and the columns do
(`String(320)` for an address, `String(255)` for a name, ...). PostgreSQL
refuses an over-long value and SQLite keeps it: the same hostile message was
stored on one backend and quarantined on the other. `maild.parse` bounds the
header values it hands out (so the bounded value is also every lookup's key);
this is the net for any other value (a name derived from an address, say).
Applies to every mapped class at INSERT and UPDATE; importing this module
registers it (`maild.store.db` does). Changes nothing else.
"""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

from sqlalchemy import String, event
from sqlalchemy.orm import Mapper

from maild.store.models import Base

log = logging.getLogger("maild.store")


@cache
def _limits(mapper: Mapper[Any]) -> tuple[tuple[str, int], ...]:
    """(attribute, length) of the mapper's VARCHAR(n) columns."""
    out = []
    for attr in mapper.column_attrs:
        column = attr.columns[0]
        if isinstance(column.type, String) and column.type.length:
            out.append((attr.key, column.type.length))
    return tuple(out)


@event.listens_for(Base, "before_insert", propagate=True)
@event.listens_for(Base, "before_update", propagate=True)
def clip_long_strings(mapper: Mapper[Any], _connection: Any, target: Any) -> None:
    for key, length in _limits(mapper):
        value = target.__dict__.get(key)  # unloaded attributes are not being written
        if isinstance(value, str) and len(value) > length:
            log.warning("%s.%s: value of %d characters clipped to %d: %r...",
                        mapper.class_.__name__, key, len(value), length, value[:40])
            setattr(target, key, value[:length])
