"""The daily digest over the hand-built week of tests/test_kpi.py: Friday 2026-10-30."""

from __future__ import annotations

import email
from datetime import date
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import pytest
from sqlalchemy import update

from maild.report import Digest, build_digest, render_digest_email
from maild.report.digest import bars, compare, duration
from maild.store.models import Ticket
from tests.builders import migrated_sessions
from tests.test_kpi import AGENTS, CAL, L, build_week

FRIDAY = date(2026, 10, 30)
NOW = L(11, 2, 11)  # Monday 11:00 local: T3 and T13 are due at 13:00 -> at risk
EVIL = "<script>alert('x')</script> refund & more"


def make(db_url: str, templates: Path | None = None) -> Digest:
    with migrated_sessions(db_url)() as s:
        build_week(s)
        s.execute(update(Ticket).where(Ticket.created_at == L(10, 29, 10)).values(subject=EVIL))
        s.commit()
        return build_digest(s, CAL, FRIDAY, "Europe/Istanbul", NOW, company="ACME",
                            templates=templates)


@pytest.fixture
def digest(db_url: str) -> Digest:
    return make(db_url)


def test_figures_and_arrows(digest: Digest) -> None:
    # Friday: created T9 T12 (2) vs 7 in the 7 days before (avg 1): up 100%, "higher".
    # FRT business: T4 10800, T9 1200, T12 10800 -> median 3h 0m; week: T1 5400 T2 5400
    # T5 21600 T8 3600 -> median 5400 = 1h 30m: up 100%, worse.
    # SLA: 3/3 vs 3/4: up 25 pts, better. OTR: T4 T9 T12 3/3 vs T1 of T1 T2 T7 T8: +75 pts.
    # Breaches: T6 (1) vs T5 (1/7 per day; T7 was solved before its due time): up 600%.
    lines = digest.text.splitlines()
    assert "- Tickets created: 2  ▲ 100% vs 7-day avg 1 (higher)" in lines
    assert "- FRT median (business): 3h 0m  ▲ 100% vs 7-day avg 1h 30m (worse)" in lines
    assert "- SLA attained: 100%  ▲ 25 pts vs 7-day avg 75% (better)" in lines
    assert "- One-touch resolution: 100%  ▲ 75 pts vs 7-day avg 25% (better)" in lines
    assert "- SLA breaches: 1  ▲ 600% vs 7-day avg 0.1 (worse)" in lines
    for figure in ("3h 0m", "100%", "▲ 25 pts", "(avg 1h 30m, worse)", "(avg 75%, better)"):
        assert figure in digest.html
    assert digest.data["stats"]["tickets_created"] == 2
    assert digest.subject == "ACME support 2026-10-30: 2 new, FRT 3h 0m, 1 SLA breach"


def test_hour_chart(digest: Digest) -> None:
    # first responses Friday local: 09:20 (T9), 10:00 (T4), 14:00 (T12)
    chart = digest.data["chart"]
    assert [h for h, n in enumerate(chart["counts"]) if n] == [9, 10, 14]
    assert chart["spark"] == "·" * 9 + "██" + "·" * 3 + "█" + "·" * 9
    assert chart["spark"] in digest.text
    assert digest.html.count("height:60px;background:#2b6cb0") == 3


def test_ticket_lists(digest: Digest) -> None:
    data = digest.data
    assert [t["id"] for t in data["breached"]] == [6]  # T6, due Fri 13:00, never answered
    assert [t["customer"] for t in data["breached"]] == ["ann@example.org"]
    # at Monday 11:00: T3 and T13 due at 13:00 (2h left); T12 was answered at 07:30 (ids are T<n>)
    assert [t["id"] for t in data["at_risk"]] == [3, 13]
    assert [t["waiting"] for t in data["at_risk"]] == ["2d 1h", "13h 0m"]
    # waiting since: T11 Tue 14:00, T5 Wed 10:00, T6 Thu 10:00, T3 Sat 10:00, T13 Sun 22:00
    assert [t["waiting"] for t in data["oldest"]] == ["5d 21h", "5d 1h", "4d 1h", "2d 1h",
                                                      "13h 0m"]
    # keyed by address; without [agents], named by their replies' display names
    assert [(a["agent"], a["name"]) for a in data["agents"]] == [
        ("alice@example.com", "Alice (Example Support)"),
        ("support@example.com", "Bob (Example Support)"), ("sales@example.com", "Carol (Sales)")]
    assert "  Alice (Example Support) <alice@example.com>: 1 replies" in digest.text
    assert "Alice (Example Support) &lt;alice@example.com&gt;" in digest.html
    for part in (digest.text, digest.html):
        assert "5d 21h" in part


def test_customer_text_is_escaped_and_html_is_self_contained(digest: Digest) -> None:
    html = digest.html.lower()
    assert "<script" not in html and "&lt;script&gt;alert(" in html
    assert "refund &amp; more" in html
    assert EVIL in digest.text  # plain text needs no escaping
    for banned in ("http", "<img", "<style", "class=", "<link", "url("):
        assert banned not in html
    assert "max-width:640px" in html


def test_email_is_multipart_alternative(digest: Digest) -> None:
    raw = render_digest_email(digest, "maild@example.com",
                              ["boss@example.com", "lead@example.com"], NOW)
    msg = email.message_from_bytes(raw, policy=default)
    assert isinstance(msg, EmailMessage)
    assert msg.get_content_type() == "multipart/alternative"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Message-ID"].endswith("@example.com>")
    assert msg["To"] == "boss@example.com, lead@example.com"
    assert msg["Subject"].strip() == digest.subject  # long subjects are folded
    text, html = (p for p in msg.iter_parts())
    assert text.get_content_type() == "text/plain" and "3h 0m" in text.get_content()
    assert html.get_content_type() == "text/html" and "&lt;script&gt;" in html.get_content()


def test_templates_can_be_overridden(db_url: str, tmp_path: Path) -> None:
    txt = "T {{ stats.tickets_created }} {{ breached[0].subject }}"
    (tmp_path / "digest.txt.j2").write_text(txt)
    (tmp_path / "digest.html.j2").write_text("<p>{{ breached[0].subject }}</p>")
    d = make(db_url, tmp_path)
    assert d.text == f"T 2 {EVIL}"
    assert d.html.startswith("<p>&lt;script&gt;")


def test_compare_words() -> None:
    frt = compare("FRT median", 4320, 5280, kind="duration", better="lower")
    assert (frt["value"], frt["arrow"], frt["change"], frt["verdict"]) == (
        "1h 12m", "▼", "18%", "better")
    sla = compare("SLA", 0.8, 0.9, kind="rate", better="higher")
    assert (sla["arrow"], sla["change"], sla["verdict"]) == ("▼", "10 pts", "worse")
    assert compare("n", 3, 3.0, kind="count", better=None)["arrow"] == "="
    assert compare("n", None, 3.0, kind="count", better=None)["change"] == "no data"
    assert compare("n", 2, 0.0, kind="count", better=None)["change"] == "from 0"
    assert [duration(s) for s in (None, 40, 600, 4320, 90000)] == [
        "–", "40s", "10m", "1h 12m", "1d 1h"]
    assert bars([0] * 24)["peak"] is None


def friday_machine_mail(db_url: str) -> tuple[Digest, Digest]:
    """Friday's digest before and after machine mail and bounces arrive on Friday."""
    from tests.test_kpi import World

    with migrated_sessions(db_url)() as s:
        w = build_week(s)
        before = build_digest(s, CAL, FRIDAY, "Europe/Istanbul", NOW, agents=AGENTS)
        t6, t9 = s.get_one(Ticket, 6), s.get_one(Ticket, 9)
        assert isinstance(w, World)
        kinds = ["auto-reply"] * 3 + ["bounce"] * 2 + ["bulk", "notification"]
        for minute, kind in enumerate(kinds):  # Friday 08:00..08:06 local, on T6
            w.msg(t6, "in", L(10, 30, 8, minute), "Robot", auto=True, sender_class="machine",
                  machine_kind=kind, addr="robot@example.net")
        w.msg(t9, "in", L(10, 31, 8), "Robot", auto=True, sender_class="machine",
              machine_kind="report", addr="dmarc@example.net")  # Saturday: not Friday's
        w.event(t9, L(10, 30, 9, 25), "delivery_failed", address="ann@exampel.org",
                status="5.1.2", diagnostic="smtp; 550 5.1.2 <ann@exampel.org>: Host or "
                "domain name not found. " + "Name service error for name=exampel.org " * 5,
                message_id="<b1@x>")
        w.event(t9, L(10, 29, 9), "delivery_failed", address="old@example.org",
                status="5.1.1", diagnostic="Thursday's", message_id="<b2@x>")
        s.commit()
        after = build_digest(s, CAL, FRIDAY, "Europe/Istanbul", NOW, agents=AGENTS)
    return before, after


def test_filtered_line_and_unreachable_customers(db_url: str) -> None:
    before, after = friday_machine_mail(db_url)
    assert "- Filtered (machine mail, not counted): 0" in before.text.splitlines()
    line = ("Filtered (machine mail, not counted): 7 — 3 auto-reply, 2 bounce, 1 bulk, "
            "1 notification")
    assert f"- {line}" in after.text.splitlines()
    assert line in after.html
    # the figures and lists are those of customer mail only: unchanged
    for key in ("comparisons", "chart", "breached", "at_risk", "oldest", "agents", "subject"):
        assert after.data[key] == before.data[key], key
    assert "CUSTOMERS WE COULD NOT REACH (0)" in before.text
    [row] = after.data["unreachable"]  # Thursday's failure is not Friday's
    assert (row["ticket"], row["address"], row["status"], row["at"]) == (
        9, "ann@exampel.org", "5.1.2", "09:25")
    assert len(row["diagnostic"]) <= 120 and row["diagnostic"].endswith("…")
    assert row["diagnostic"].startswith("smtp; 550 5.1.2 <ann@exampel.org>: Host or domain")
    assert "CUSTOMERS WE COULD NOT REACH (1)" in after.text
    assert f"  #9  <ann@exampel.org>  5.1.2  {row['diagnostic']}" in after.text.splitlines()
    assert "Customers we could not reach (1)" in after.html
    assert "&lt;ann@exampel.org&gt;: Host or domain" in after.html
    assert "  Alice <alice@example.com>: 1 replies" in after.text
