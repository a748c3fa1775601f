"""Evaluate the automations on one ticket's facts: which hold now, and when each
would fire if nothing else changed (`explain`, the dry run `maild rules test`
prints). Pure: facts and a time in, a list of dicts out."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from maild.escalation.model import TicketFacts, TimedAutomation


def fire_time(auto: TimedAutomation, facts: TicketFacts, now: datetime) -> datetime | None:
    """When `auto` would fire: now if it holds, else the latest due time of its time
    conditions if every other condition holds already, else None (not by waiting)."""
    if auto.holds(facts, now):
        return now
    dues = []
    for cond in auto.conditions:
        due = cond.due(facts)
        if due is None:
            if not cond.check(facts, now):
                return None
            continue
        dues.append(due)
    if not dues:
        return None
    at = max(dues)
    return at if at > now and auto.holds(facts, at) else None


def explain(automations: Sequence[TimedAutomation], facts: TicketFacts, now: datetime,
            fired: dict[str, bool] | None = None) -> list[dict[str, Any]]:
    """One entry per automation: holds now, would fire at, each condition's verdict;
    `fired`: name -> True while its current episode has fired (it will not again)."""
    out = []
    for auto in automations:
        at = fire_time(auto, facts, now)
        active = bool((fired or {}).get(auto.name))
        out.append({
            "automation": auto.name, "description": auto.description,
            "holds_now": auto.holds(facts, now),
            "fires_at": None if active or at is None else at.isoformat(),
            "already_fired": active,
            "conditions": [{"condition": c.name, "holds": c.check(facts, now)}
                           for c in auto.conditions],
            "actions": {k: v for k, v in vars(auto.actions).items() if v},
            "signals": facts.signals.describe(),
        })
    return out
