"""Time-based automations: the facts about one ticket, the conditions, the actions.

A condition has `name`, a pure `check(facts, now)` and `due(facts)`: for a time
condition (`hours_since_*`, `sla`) the instant from which it holds if nothing else
changes (so `maild rules test` can say when an automation would fire), else None.
No parsing (`loader`), no database (`runner`).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import ClassVar, Protocol

from maild.escalation.signals import Signals

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt,
    "==": operator.eq, "!=": operator.ne}
PRIORITY_ORDER = ("low", "normal", "high", "urgent")


@dataclass(frozen=True)
class TicketFacts:
    """What an automation may look at; gathered by the runner (or the dry run)."""

    ticket_id: int
    status: str
    priority: str
    tags: frozenset[str]
    created_at: datetime
    updated_at: datetime
    last_customer_at: datetime | None
    sla_warn_at: datetime | None
    sla_due_at: datetime | None
    answered: bool  # the first response was given
    unanswered: int  # customer messages since the last agent reply
    signals: Signals = field(default_factory=Signals)


class TicketCondition(Protocol):
    @property
    def name(self) -> str: ...

    def check(self, facts: TicketFacts, now: datetime) -> bool: ...

    def due(self, facts: TicketFacts) -> datetime | None: ...


@dataclass(frozen=True)
class Status:
    statuses: tuple[str, ...]
    name: ClassVar[str] = "status"

    def check(self, facts: TicketFacts, now: datetime) -> bool:
        return facts.status in self.statuses

    def due(self, facts: TicketFacts) -> datetime | None:
        return None


@dataclass(frozen=True)
class Priority:
    op: str
    level: str | None = None
    levels: tuple[str, ...] = ()
    name: ClassVar[str] = "priority"

    def check(self, facts: TicketFacts, now: datetime) -> bool:
        if self.levels:
            return facts.priority in self.levels
        rank = PRIORITY_ORDER.index
        return OPERATORS[self.op](rank(facts.priority), rank(self.level or "normal"))

    def due(self, facts: TicketFacts) -> datetime | None:
        return None


@dataclass(frozen=True)
class HoursSince:
    """`hours_since_created|updated|customer >= N` (wall-clock hours)."""

    field_name: str  # created_at | updated_at | last_customer_at
    op: str
    hours: float
    key: str

    @property
    def name(self) -> str:
        return self.key

    def _start(self, facts: TicketFacts) -> datetime | None:
        value: datetime | None = getattr(facts, self.field_name)
        return value

    def check(self, facts: TicketFacts, now: datetime) -> bool:
        start = self._start(facts)
        if start is None:
            return False
        return OPERATORS[self.op]((now - start).total_seconds() / 3600, self.hours)

    def due(self, facts: TicketFacts) -> datetime | None:
        start = self._start(facts)
        if start is None or self.op not in (">=", ">"):
            return None
        return start + timedelta(hours=self.hours)


@dataclass(frozen=True)
class Sla:
    """`sla = "at_risk" | "breached" | "at_risk_or_breached"`: the unanswered first
    response's warning time (sla.warn_fraction) or due time has passed."""

    state: str
    name: ClassVar[str] = "sla"

    def due(self, facts: TicketFacts) -> datetime | None:
        if facts.answered:
            return None
        return facts.sla_due_at if self.state == "breached" else facts.sla_warn_at

    def check(self, facts: TicketFacts, now: datetime) -> bool:
        start = self.due(facts)
        if start is None or now < start:
            return False
        breached = facts.sla_due_at is not None and now >= facts.sla_due_at
        return not breached if self.state == "at_risk" else True \
            if self.state == "at_risk_or_breached" else breached


@dataclass(frozen=True)
class Count:
    """`unanswered = ">= 2"`: customer messages since the last agent reply."""

    op: str
    value: int
    name: ClassVar[str] = "unanswered"

    def check(self, facts: TicketFacts, now: datetime) -> bool:
        return OPERATORS[self.op](facts.unanswered, self.value)

    def due(self, facts: TicketFacts) -> datetime | None:
        return None


@dataclass(frozen=True)
class Tags:
    """`tags = [...]` (any of them present), `tags_none = [...]` (none present)."""

    tags: tuple[str, ...]
    present: bool

    @property
    def name(self) -> str:
        return "tags" if self.present else "tags_none"

    def check(self, facts: TicketFacts, now: datetime) -> bool:
        return bool(facts.tags & set(self.tags)) == self.present

    def due(self, facts: TicketFacts) -> datetime | None:
        return None


@dataclass(frozen=True)
class Difficult:
    """`difficult = true|false` (any signal), `signals = [kinds]` (any of these)."""

    kinds: tuple[str, ...]
    want: bool = True
    key: str = "difficult"

    @property
    def name(self) -> str:
        return self.key

    def check(self, facts: TicketFacts, now: datetime) -> bool:
        found = facts.signals.kinds & set(self.kinds)
        return bool(found) == self.want

    def due(self, facts: TicketFacts) -> datetime | None:
        return None


@dataclass(frozen=True)
class EscalationActions:
    priority: str | None = None  # a level, or "raise" (one step up); never lowers
    assign: str | None = None
    tags: tuple[str, ...] = ()
    suggest: tuple[str, ...] = ()
    escalate_to: tuple[str, ...] = ()


@dataclass(frozen=True)
class TimedAutomation:
    """One `[[automation]]`: all conditions hold -> the actions, once per episode."""

    name: str
    conditions: tuple[TicketCondition, ...]
    actions: EscalationActions
    description: str = ""
    source: str = ""

    def holds(self, facts: TicketFacts, now: datetime) -> bool:
        return all(c.check(facts, now) for c in self.conditions)
