"""CSAT and NPS figures for `maild stats` and the digest (docs/metrics.md).

- CSAT `satisfied_pct`: answers of 4 or 5 / all CSAT answers given in the period
  (by answer time), a fraction 0-1; `responses`: that number of answers;
  `response_rate`: of the CSAT surveys sent in the period, the fraction answered
  by the period's end.
- NPS: % promoters (9-10) - % detractors (0-6) among the NPS answers given in the
  period, -100..100.
Per agent: by the agent whose reply was the ticket's last before the survey went
out (`surveys.agent`, keyed like `per_agent`). Filtered tickets never get
surveys, so they are outside these figures. Reads only.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from maild.store.models import Survey, Ticket


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def nps_score(scores: list[int]) -> float | None:
    if not scores:
        return None
    promoters = sum(1 for s in scores if s >= 9)
    detractors = sum(1 for s in scores if s <= 6)
    return round(100.0 * (promoters - detractors) / len(scores), 1)


def _csat(scores: list[int]) -> dict[str, Any]:
    return {"satisfied_pct": _ratio(sum(1 for s in scores if s >= 4), len(scores)),
            "responses": len(scores)}


def survey_figures(session: Session, since: datetime, end: datetime, mailbox_id: int | None,
                   key: Callable[[str], str]) -> dict[str, Any]:
    """{"csat": {...}, "nps": float|None, "nps_detail": {...}, "per_agent": {key: {...}}}."""
    scope = [] if mailbox_id is None else [Ticket.mailbox_id == mailbox_id]
    answers = session.execute(
        select(Survey.kind, Survey.score, Survey.agent).join(Ticket, Ticket.id == Survey.ticket_id)
        .where(Survey.status == "answered", Survey.answered_at >= since,
               Survey.answered_at < end, *scope)).all()
    sent = session.execute(
        select(Survey.status, Survey.answered_at).join(Ticket, Ticket.id == Survey.ticket_id)
        .where(Survey.kind == "csat", Survey.status.in_(("sent", "answered")),
               Survey.created_at >= since, Survey.created_at < end, *scope)).all()
    answered = sum(1 for status, at in sent if status == "answered" and at is not None
                   and at < end)
    by_kind: dict[str, list[int]] = defaultdict(list)
    per_agent: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for kind, score, agent in answers:
        if score is None:
            continue
        by_kind[kind].append(score)
        per_agent[key(agent or "")][kind].append(score)
    nps = by_kind["nps"]
    return {
        "csat": {**_csat(by_kind["csat"]), "response_rate": _ratio(answered, len(sent)),
                 "surveys_sent": len(sent)},
        "nps": nps_score(nps),
        "nps_detail": {"responses": len(nps),
                       "promoters": sum(1 for s in nps if s >= 9),
                       "passives": sum(1 for s in nps if 7 <= s <= 8),
                       "detractors": sum(1 for s in nps if s <= 6)},
        "per_agent": {agent: {"csat": _csat(kinds["csat"]), "nps": nps_score(kinds["nps"])}
                      for agent, kinds in per_agent.items()},
    }


def merge_per_agent(entries: list[dict[str, Any]], figures: Mapping[str, dict[str, Any]],
                    names: Mapping[str, str]) -> list[dict[str, Any]]:
    """`per_agent` entries with `csat` and `nps` added; an agent rated in the period but
    with no reply in it gets an entry of its own."""
    out = []
    seen = set()
    empty = {"csat": _csat([]), "nps": None}
    for entry in entries:
        seen.add(entry["agent"])
        out.append({**entry, **figures.get(entry["agent"], empty)})
    for agent, fig in figures.items():
        if agent not in seen:
            out.append({"agent": agent, "name": names.get(agent) or agent, "replies": 0,
                        "first_responses": 0, "frt_business_median": None, **fig})
    return sorted(out, key=lambda a: (a["name"].casefold(), a["agent"]))
