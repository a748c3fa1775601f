"""The managers' daily SLA digest: one local day's KPIs as a text + HTML email.

What it is for: gathering a day's figures (`kpi.compute_stats` for the day and
for the 7 days before it), the first responses by local hour, the breached,
at-risk and oldest waiting tickets, and rendering them with the overridable
Jinja2 templates `digest.txt.j2` / `digest.html.j2` into a `Digest`, then into a
multipart/alternative message (`render_digest_email`).

What it must not do: read the clock (`now` is passed in), write to the database,
send or enqueue mail, or put customer text into HTML unescaped: the HTML
template renders with autoescape on in a sandbox; it uses inline styles only,
no images, scripts or external resources.

Lists of tickets (at risk, oldest waiting) describe the state at `now`; the
figures describe the day (customer tickets and messages only: filtered tickets
and machine mail are outside them; one line counts the day's machine mail, and
"Customers we could not reach" lists its bounces of our mail). The "7-day avg"
is the previous seven local days taken as one period: counts are divided by 7,
rates and medians are pooled. With several mailboxes, the figures are for all of
them and a section per mailbox follows: its own figures and ticket lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import FileSystemLoader, StrictUndefined, select_autoescape
from jinja2.sandbox import ImmutableSandboxedEnvironment
from sqlalchemy import select
from sqlalchemy.orm import Session

from maild.calendar import BusinessCalendar
from maild.compose import make_message_id, one_line
from maild.report.kpi import (
    breached_in,
    compute_stats,
    delivery_failures,
    ticket_scope,
    waiting,
)
from maild.resources import default_templates
from maild.store.models import Customer, Mailbox, Ticket

AT_RISK_WINDOW = timedelta(hours=4)
AT_RISK_FRACTION = 0.8
OLDEST_LIMIT = 5
DIAGNOSTIC_SHOWN = 120  # characters of a bounce's diagnostic shown per line
SPARKS = "▁▂▃▄▅▆▇█"


@dataclass(frozen=True)
class Digest:
    subject: str
    text: str
    html: str
    data: dict[str, Any]


def day_bounds(day: date, tz: str) -> tuple[datetime, datetime]:
    """Local midnight of `day` and of the next day in `tz`, as UTC."""
    zone = ZoneInfo(tz)
    start = datetime.combine(day, time(0), zone).astimezone(UTC)
    return start, datetime.combine(day + timedelta(days=1), time(0), zone).astimezone(UTC)


def duration(seconds: float | None) -> str:
    """1d 4h, 1h 12m, 12m, 40s; an en dash when there is no value."""
    if seconds is None:
        return "–"
    s = round(seconds)
    d, h, m = s // 86400, s % 86400 // 3600, s % 3600 // 60
    if d:
        return f"{d}d {h}h"
    if h:
        return f"{h}h {m}m"
    return f"{m}m" if m else f"{s}s"


def pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.0f}%"


def compare(label: str, value: float | None, base: float | None, *, kind: str,
            better: str | None) -> dict[str, Any]:
    """One KPI line: value vs the 7-day figure, an arrow and a word.

    kind: "count", "duration" or "rate" (rates change in percentage points);
    better: "lower", "higher" or None (volume: just higher/lower)."""
    show = {"count": lambda v: f"{v:g}" if v is not None else "–", "duration": duration,
            "rate": pct}[kind]
    line = {"label": label, "value": show(value), "baseline": show(
        None if base is None else round(base, 1) if kind == "count" else base)}
    if value is None or base is None:
        return {**line, "arrow": "", "change": "no data", "verdict": ""}
    diff = value - base
    if abs(diff) < 1e-9:
        return {**line, "arrow": "=", "change": "same", "verdict": "same"}
    up = diff > 0
    if kind == "rate":
        change = f"{abs(diff) * 100:.0f} pts"
    else:
        change = f"{abs(diff) / base * 100:.0f}%" if base else "from 0"
    verdict = ("higher" if up else "lower") if better is None else (
        "better" if up == (better == "higher") else "worse")
    return {**line, "arrow": "▲" if up else "▼", "change": change, "verdict": verdict}


def _comparisons(day: dict[str, Any], week: dict[str, Any]) -> list[dict[str, Any]]:
    def per_day(key: str) -> float:
        return float(week[key]) / 7

    return [
        compare("Tickets created", day["tickets_created"], per_day("tickets_created"),
                kind="count", better=None),
        compare("First responses", day["first_responses"], per_day("first_responses"),
                kind="count", better=None),
        compare("FRT median (business)", day["frt_business_seconds"]["median"],
                week["frt_business_seconds"]["median"], kind="duration", better="lower"),
        compare("SLA attained", day["sla"]["attained_pct"], week["sla"]["attained_pct"],
                kind="rate", better="higher"),
        compare("SLA breaches", day["sla"]["breaches"], week["sla"]["breaches"] / 7,
                kind="count", better="lower"),
        compare("One-touch resolution", day["otr_rate"], week["otr_rate"], kind="rate",
                better="higher"),
        compare("Resolution rate", day["resolution_rate"], week["resolution_rate"],
                kind="rate", better="higher"),
    ]


def responses_by_hour(session: Session, since: datetime, end: datetime, tz: str,
                      mailbox_id: int | None) -> list[int]:
    """First responses in [since, end) counted by local hour of day (0-23)."""
    zone, counts = ZoneInfo(tz), [0] * 24
    for at in session.scalars(select(Ticket.first_response_at).where(
            Ticket.first_response_at >= since, Ticket.first_response_at < end,
            *ticket_scope(mailbox_id))):
        if at is not None:
            counts[at.astimezone(zone).hour] += 1
    return counts


def bars(counts: list[int], height: int = 60) -> dict[str, Any]:
    """Bar heights (px) for the HTML chart and a one-line sparkline for text."""
    top = max(counts) or 1
    spark = "".join("·" if n == 0 else SPARKS[min(7, (n * 8 - 1) // top)] for n in counts)
    return {"counts": counts, "heights": [round(n * height / top) for n in counts],
            "height": height, "spark": spark, "peak": counts.index(max(counts))
            if any(counts) else None}


def _row(t: Ticket, customer: str, now: datetime, zone: ZoneInfo,
         since: datetime | None = None) -> dict[str, Any]:
    start = since or t.created_at
    until = t.first_response_at if t.first_response_at and not since else now
    return {"id": t.id, "subject": t.subject, "customer": customer,
            "waiting": duration((until - start).total_seconds()),
            "answered": t.first_response_at is not None,
            "due": t.sla_due_at.astimezone(zone).strftime("%a %H:%M") if t.sla_due_at else "–"}


def _tickets(session: Session, *where: Any) -> list[tuple[Ticket, str]]:
    rows = session.execute(select(Ticket, Customer.address).join(
        Customer, Customer.id == Ticket.customer_id).where(*where).order_by(Ticket.id))
    return [(t, addr) for t, addr in rows]


def breached(session: Session, since: datetime, end: datetime, now: datetime, zone: ZoneInfo,
             mailbox_id: int | None) -> list[dict[str, Any]]:
    """Tickets whose SLA was due in [since, end) and not met (as in `kpi`)."""
    return [_row(t, c, now, zone) for t, c in _tickets(
        session, *breached_in(since, end), *ticket_scope(mailbox_id))]


def at_risk(session: Session, calendar: BusinessCalendar, now: datetime, zone: ZoneInfo,
            mailbox_id: int | None) -> list[dict[str, Any]]:
    """Open, unanswered tickets not yet due whose due time is within 4 hours or that
    have used 80% of their (business) time."""
    out = []
    for t, c in _tickets(session, Ticket.status.in_(("new", "open")), Ticket.created_at <= now,
                         Ticket.first_response_at.is_(None), Ticket.sla_due_at > now,
                         *ticket_scope(mailbox_id)):
        due = t.sla_due_at
        assert due is not None
        allowed = calendar.business_seconds(t.created_at, due)
        used = calendar.business_seconds(t.created_at, now)
        if due - now <= AT_RISK_WINDOW or (allowed and used >= AT_RISK_FRACTION * allowed):
            out.append(_row(t, c, now, zone))
    return out


def oldest_waiting(session: Session, now: datetime, zone: ZoneInfo,
                   mailbox_id: int | None) -> list[dict[str, Any]]:
    waits = waiting(session, now, mailbox_id, limit=OLDEST_LIMIT)
    found = {t.id: (t, c) for t, c in _tickets(session, Ticket.id.in_([i for i, _ in waits]))}
    return [_row(*found[tid], now, zone, since=at) for tid, at in waits]


def satisfaction_line(stats: dict[str, Any]) -> str:
    """CSAT and NPS of the day in one line (docs/metrics.md)."""
    csat, detail = stats["csat"], stats["nps_detail"]
    line = f"Satisfaction (CSAT): {pct(csat['satisfied_pct'])} satisfied of " \
           f"{csat['responses']} answer{'' if csat['responses'] == 1 else 's'}, response " \
           f"rate {pct(csat['response_rate'])} of {csat['surveys_sent']} survey" \
           f"{'' if csat['surveys_sent'] == 1 else 's'} sent"
    if detail["responses"]:
        line += f"; NPS {stats['nps']:+.0f} ({detail['responses']} answers)"
    return line


def agent_satisfaction(entry: dict[str, Any]) -> str:
    csat = entry.get("csat") or {}
    if not csat.get("responses"):
        return ""
    nps = f", NPS {entry['nps']:+.0f}" if entry.get("nps") is not None else ""
    return f"CSAT {pct(csat['satisfied_pct'])} ({csat['responses']}){nps}"


def filtered_line(filtered: dict[str, Any]) -> str:
    """"Filtered (machine mail, not counted): 7 — 3 auto-reply, 2 bounce, ...": the
    day's machine mail by kind, most first (kinds with none left out)."""
    kinds = sorted(((n, k) for k, n in filtered["by_kind"].items() if n),
                   key=lambda nk: (-nk[0], nk[1]))
    parts = ", ".join(f"{n} {k}" for n, k in kinds)
    return f"Filtered (machine mail, not counted): {filtered['total']}" + (
        f" — {parts}" if parts else "")


def shorten(text: str, limit: int = DIAGNOSTIC_SHOWN) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def unreachable(session: Session, since: datetime, end: datetime, zone: ZoneInfo,
                mailbox_id: int | None) -> list[dict[str, Any]]:
    """The day's `delivery_failed` events: whose mail bounced, on which ticket, why."""
    return [{"ticket": e.ticket_id, "address": str(e.detail.get("address") or ""),
             "status": str(e.detail.get("status") or ""),
             "diagnostic": shorten(str(e.detail.get("diagnostic") or "")),
             "at": e.at.astimezone(zone).strftime("%H:%M")}
            for e in session.scalars(delivery_failures(since, end, mailbox_id))]


def mailbox_sections(session: Session, calendar: BusinessCalendar, stats: dict[str, Any],
                     since: datetime, end: datetime, now: datetime,
                     zone: ZoneInfo) -> list[dict[str, Any]]:
    """One section per mailbox when there are several: its figures (from `per_mailbox`),
    its breaches, tickets at risk and oldest waiting. Empty for a single mailbox."""
    ids = {address: mid for address, mid in session.execute(select(Mailbox.address, Mailbox.id))}
    if len(stats["per_mailbox"]) < 2:
        return []
    out = []
    for m in stats["per_mailbox"]:
        mid = ids[m["mailbox"]]
        out.append({**m, "frt": duration(m["frt_business_median"]),
                    "sla_attained": pct(m["sla_attained_pct"]),
                    "breached": breached(session, since, end, now, zone, mid),
                    "at_risk": at_risk(session, calendar, now, zone, mid),
                    "oldest": oldest_waiting(session, now, zone, mid)})
    return out


def environment(templates: Path | str | None = None) -> ImmutableSandboxedEnvironment:
    """The digest's Jinja2 environment: sandboxed, strict, autoescaping *.html.j2."""
    return ImmutableSandboxedEnvironment(
        loader=FileSystemLoader(str(templates or default_templates() / "digest")),
        autoescape=select_autoescape(["html", "html.j2"], default_for_string=True),
        undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def build_digest(session: Session, calendar: BusinessCalendar, day: date, tz: str,
                 now: datetime, *, company: str = "", mailbox_id: int | None = None,
                 agents: dict[str, str] | None = None,
                 templates: Path | str | None = None) -> Digest:
    """The digest of local `day` in `tz`, seen at `now`; `agents` names agents."""
    since, until = day_bounds(day, tz)
    zone, end = ZoneInfo(tz), min(until, now)
    stats = compute_stats(session, calendar, since, until, now, mailbox_id, agents)
    week = compute_stats(session, calendar, day_bounds(day - timedelta(days=7), tz)[0],
                         since, now, mailbox_id, agents)
    data: dict[str, Any] = {
        "company": company, "day": day.isoformat(), "day_label": day.strftime("%A %d %B %Y"),
        "timezone": tz, "now": now.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
        "stats": stats, "week": week, "comparisons": _comparisons(stats, week),
        "chart": bars(responses_by_hour(session, since, end, tz, mailbox_id)),
        "breached": breached(session, since, end, now, zone, mailbox_id),
        "at_risk": at_risk(session, calendar, now, zone, mailbox_id),
        "oldest": oldest_waiting(session, now, zone, mailbox_id),
        "agents": [{**a, "frt": duration(a["frt_business_median"]),
                    "label": a["name"] if a["name"] == a["agent"]
                    else f"{a['name']} <{a['agent']}>", "satisfaction": agent_satisfaction(a)}
                   for a in stats["per_agent"]],
        "satisfaction_line": satisfaction_line(stats),
        "filtered_line": filtered_line(stats["filtered"]),
        "unreachable": unreachable(session, since, end, zone, mailbox_id),
        "mailboxes": [] if mailbox_id is not None else
        mailbox_sections(session, calendar, stats, since, end, now, zone),
    }
    frt = duration(stats["frt_business_seconds"]["median"])
    breaches = stats["sla"]["breaches"]
    subject = one_line(f"{company + ' ' if company else ''}support {day.isoformat()}: "
                       f"{stats['tickets_created']} new, FRT {frt}, "
                       f"{breaches} SLA breach{'' if breaches == 1 else 'es'}")
    env = environment(templates)
    data["subject"] = subject
    return Digest(subject, env.get_template("digest.txt.j2").render(data),
                  env.get_template("digest.html.j2").render(data), data)


def render_digest_email(digest: Digest, sender: str, to: list[str], date: datetime,
                        message_id: str | None = None) -> bytes:
    """A multipart/alternative (text, then HTML) message marked auto-generated."""
    msg = EmailMessage(policy=SMTP)
    msg["From"] = one_line(sender)
    msg["To"] = ", ".join(one_line(a) for a in to)
    msg["Subject"] = one_line(digest.subject)
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = message_id or make_message_id(
        one_line(sender).rpartition("@")[2].strip("> "), None)
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    msg.set_content(digest.text.replace("\r\n", "\n"), charset="utf-8",
                    cte="quoted-printable")
    msg.add_alternative(digest.html, subtype="html", charset="utf-8", cte="quoted-printable")
    return msg.as_bytes()
