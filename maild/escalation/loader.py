"""Load the `[[automation]]` tables of the rule files (`rules/*.toml`).

    [[automation]]
    name = "angry-and-waiting"          # required, unique, [a-z0-9-]+
    description = "..."
    [automation.when]                   # all must hold
    status = ["new", "open"]            # ticket status, any of
    priority = ">= high"                # a comparison, a level, or a list of levels
    hours_since_created = 4             # a number (>=) or a comparison (">= 4")
    hours_since_updated = ">= 24"
    hours_since_customer = 2            # since the customer's last message
    sla = "at_risk"                     # at_risk | breached | at_risk_or_breached
    unanswered = ">= 2"                 # customer messages since the last agent reply
    tags = ["vip"]                      # any present;  tags_none = [...]: none present
    difficult = true                    # any "difficult conversation" signal
    signals = ["threat", "all-caps"]    # any of these signals
    [automation.then]
    priority = "raise"                  # or a level; never lowers
    assign = "lead@example.com"
    tags = ["escalated"]
    suggest = ["angry-customer"]        # macro names
    escalate_to = ["lead@example.com"]  # notified by mail

Errors are `RuleError`s naming the file, the automation and the field, like the
rules' (`maild.rules.loader`). Reads the files; evaluates nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from maild.errors import RuleError
from maild.escalation.model import (
    OPERATORS,
    PRIORITY_ORDER,
    Count,
    Difficult,
    EscalationActions,
    HoursSince,
    Priority,
    Sla,
    Status,
    Tags,
    TicketCondition,
    TimedAutomation,
)
from maild.escalation.signals import SIGNAL_KINDS
from maild.rules.fields import (
    FieldError,
    expect_bool,
    expect_choice,
    expect_str,
    expect_str_list,
)
from maild.rules.loader import _read, _unknown, rule_files

KEYS = ("name", "description", "when", "then")
STATUSES = ("new", "open", "pending", "solved")
SLA_STATES = ("at_risk", "breached", "at_risk_or_breached")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_CMP_RE = re.compile(r"^\s*(>=|<=|==|!=|>|<)?\s*(-?\d+(?:\.\d+)?)\s*$")
_PRIO_RE = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*([a-z]+)\s*$")
HOURS = {"hours_since_created": "created_at", "hours_since_updated": "updated_at",
         "hours_since_customer": "last_customer_at"}


def _comparison(value: object) -> tuple[str, float]:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return ">=", float(value)
    found = _CMP_RE.match(expect_str(value))
    if not found:
        raise FieldError(f'expected a number or a comparison like ">= 4", got {value!r}')
    return found.group(1) or ">=", float(found.group(2))


def _priority(value: object) -> TicketCondition:
    if isinstance(value, list):
        return Priority("in", levels=tuple(expect_choice(v, PRIORITY_ORDER)
                                           for v in expect_str_list(value)))
    text = expect_str(value)
    found = _PRIO_RE.match(text)
    if found:
        return Priority(found.group(1), expect_choice(found.group(2), PRIORITY_ORDER))
    return Priority("==", expect_choice(text.strip(), PRIORITY_ORDER))


def _status(value: object) -> TicketCondition:
    items = (value,) if isinstance(value, str) else expect_str_list(value)
    return Status(tuple(expect_choice(v, STATUSES) for v in items))


def _signals(value: object) -> TicketCondition:
    return Difficult(tuple(expect_choice(v, SIGNAL_KINDS) for v in expect_str_list(value)),
                     key="signals")


def _hours(field_name: str, key: str, value: object) -> TicketCondition:
    op, hours = _comparison(value)
    return HoursSince(field_name, op, hours, key)


def _unanswered(value: object) -> TicketCondition:
    op, n = _comparison(value)
    return Count(op, int(n))


CONDITIONS: dict[str, Callable[[object], TicketCondition]] = {
    "status": _status,
    "priority": _priority,
    **{key: partial(_hours, f, key) for key, f in HOURS.items()},
    "sla": lambda v: Sla(expect_choice(v, SLA_STATES)),
    "unanswered": _unanswered,
    "tags": lambda v: Tags(expect_str_list(v), True),
    "tags_none": lambda v: Tags(expect_str_list(v), False),
    "difficult": lambda v: Difficult(SIGNAL_KINDS, expect_bool(v)),
    "signals": _signals,
}


def _addresses(value: object) -> tuple[str, ...]:
    items = (value,) if isinstance(value, str) else expect_str_list(value)
    for a in items:
        if "@" not in a or any(c.isspace() for c in a):
            raise FieldError(f"not an email address: {a!r}")
    return tuple(a.lower() for a in items)


def _actions(then: dict[str, Any], macros: set[str] | None,
             fail: Callable[[str, str], None]) -> EscalationActions:
    fields: dict[str, Any] = {}
    builders: dict[str, Callable[[object], Any]] = {
        "priority": lambda v: expect_choice(v, ("raise", *PRIORITY_ORDER)),
        "assign": lambda v: _addresses(v)[0],
        "tags": expect_str_list,
        "suggest": expect_str_list,
        "escalate_to": _addresses,
    }
    for key, value in then.items():
        if key not in builders:
            fail(f"then.{key}", _unknown(key, builders, "action"))
            continue
        try:
            fields[key] = builders[key](value)
        except FieldError as exc:
            fail(f"then.{key}", str(exc))
    unknown = [m for m in fields.get("suggest", ()) if macros is not None and m not in macros]
    if unknown:
        fail("then.suggest", f"unknown macro {unknown[0]!r}")
    if not fields:
        fail("then", "no action (priority, assign, tags, suggest, escalate_to)")
    return EscalationActions(**fields)


def _automation(raw: object, path: Path, index: int, macros: set[str] | None,
                errors: list[RuleError]) -> TimedAutomation | None:
    if not isinstance(raw, dict):
        errors.append(RuleError(f"{path}: automation #{index}: expected a table"))
        return None
    name = raw.get("name")
    label = f'"{name}" (#{index})' if isinstance(name, str) else f"#{index}"
    before = len(errors)

    def fail(where: str, message: str) -> None:
        errors.append(RuleError(f"{path}: automation {label}: {where}: {message}"))

    if not isinstance(name, str) or not _NAME_RE.match(name):
        fail("name", f"must match [a-z0-9-]+, got {name!r}")
    for key in raw:
        if key not in KEYS:
            fail(key, _unknown(key, KEYS, "key"))
    conditions: list[TicketCondition] = []
    when, then = raw.get("when", {}), raw.get("then", {})
    if not isinstance(when, dict) or not when:
        fail("when", "expected a table with at least one condition")
        when = {}
    for key, value in when.items():
        if key not in CONDITIONS:
            fail(f"when.{key}", _unknown(key, CONDITIONS, "condition"))
            continue
        try:
            conditions.append(CONDITIONS[key](value))
        except FieldError as exc:
            fail(f"when.{key}", str(exc))
    actions = _actions(then if isinstance(then, dict) else {}, macros, fail)
    if len(errors) > before:
        return None
    return TimedAutomation(str(name), tuple(conditions), actions,
                           str(raw.get("description", "")), str(path))


def collect_automations(directory: Path, macros: set[str] | None = None
                        ) -> tuple[list[TimedAutomation], list[RuleError]]:
    """Every `[[automation]]` of the rule files, and every error in them."""
    found: list[TimedAutomation] = []
    errors: list[RuleError] = []
    if not directory.is_dir():
        return [], []
    for path in rule_files(directory):
        try:
            data = _read(path)
        except RuleError:
            continue  # the rules loader reports an unreadable file
        entries = data.get("automation", [])
        if not isinstance(entries, list):
            errors.append(RuleError(f"{path}: automation: expected [[automation]] tables"))
            continue
        for i, raw in enumerate(entries, start=1):
            auto = _automation(raw, path, i, macros, errors)
            if auto is None:
                continue
            if any(a.name == auto.name for a in found):
                errors.append(RuleError(f'{path}: automation "{auto.name}" (#{i}): name: '
                                        "duplicate automation name"))
                continue
            found.append(auto)
    return found, errors


def load_automations(directory: Path, macros: set[str] | None = None
                     ) -> tuple[TimedAutomation, ...]:
    """The automations; raise the first error."""
    found, errors = collect_automations(directory, macros)
    if errors:
        raise errors[0]
    return tuple(found)


__all__ = ["CONDITIONS", "OPERATORS", "collect_automations", "load_automations"]
