"""CSAT/NPS by mail without servers, on SQLite and PostgreSQL: links and tokens, the
survey after a solved ticket (once, per-customer limits, opt-out, language), the
answer recorded (no reopen, no follow-up, no reply), bad and reused tokens, figures."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import date, timedelta
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import unquote

import pytest
from sqlalchemy import func, select

from maild.app import App, build_app
from maild.clock import FixedClock
from maild.config import load_config
from maild.ingest import IngestItem
from maild.replying import Agent, prepare_reply, send_reply, set_status
from maild.report import build_digest, compute_stats
from maild.schedule import job_surveys
from maild.store.db import upgrade
from maild.store.models import Customer, Event, MessageRow, OutboxRow, Setting, Survey, Ticket
from maild.surveys.links import answer_subject, parse_answer, token, token_ok
from maild.views import list_tickets
from tests.builders import raw_mail, utc
from tests.test_replying import REPO, deliver, write_config

CUSTOMER = "Ann Customer <ann@example.org>"
AGENT = "Ayse <ayse@example.com>"


def make_app(tmp: Path, db_url: str, extra: str = "", environ: dict[str, str] | None = None
             ) -> App:
    cfg = write_config(tmp, db_url, '[agents]\n"ayse@example.com" = "Ayşe"\n' + extra)
    built = build_app(load_config(cfg), FixedClock(utc(2026, 11, 2, 10)), environ=environ or {})
    upgrade(built.engine)
    return built


@pytest.fixture
def app(db_url: str, tmp_path: Path) -> App:
    return make_app(tmp_path, db_url)


_uid = iter(range(1, 10_000))


def feed(app: App, raw: bytes, role: str = "inbox") -> None:
    ing = app.ingestor(app.config.mailboxes[0])
    ing.ingest_batch(role, "INBOX" if role == "inbox" else "Sent", 1,
                     [IngestItem(next(_uid), raw, app.clock.now())])


def solved_ticket(app: App, n: int = 1, frm: str = CUSTOMER, body: str = "My order is late",
                  subject: str = "Order late") -> int:
    """A customer writes, an agent answers, the agent solves it; the ticket id."""
    feed(app, raw_mail(frm=frm, subject=subject, msgid=f"<c{n}@example.org>", body=body))
    with app.sessions() as s:
        tid = s.scalar(select(MessageRow.ticket_id).where(
            MessageRow.message_id == f"<c{n}@example.org>"))
    assert tid is not None
    feed(app, raw_mail(frm=AGENT, to=frm, subject=f"Re: {subject} [#{tid}]",
                       msgid=f"<a{n}@example.com>", in_reply_to=f"<c{n}@example.org>",
                       body="It is on its way."), role="sent")
    with app.sessions.begin() as s:
        set_status(s, s.get_one(Ticket, tid), "solved", now=app.clock.now(), actor="ayse")
    return tid


def surveys_out(app: App) -> list[EmailMessage]:
    with app.sessions() as s:
        raws = s.scalars(select(OutboxRow.raw).where(OutboxRow.kind == "survey")
                         .order_by(OutboxRow.id)).all()
    return [email.message_from_bytes(r, policy=email.policy.default)  # type: ignore[misc]
            for r in raws]


def links(msg: EmailMessage) -> dict[str, str]:
    """answer subject -> mailto URL, from the text part."""
    body = msg.get_body(("plain",))
    assert body is not None
    urls = re.findall(r"mailto:\S+", body.get_content())
    return {unquote(u.split("?subject=", 1)[1]): u for u in urls}


def subject_for(msg: EmailMessage, needle: str) -> str:
    [found] = [s for s in links(msg) if needle in s.split()]
    return found


def answer(app: App, subject: str, body: str = "", frm: str = CUSTOMER, n: int = 0) -> None:
    feed(app, raw_mail(frm=frm, subject=subject, msgid=f"<ans{n}-{next(_uid)}@example.org>",
                       body=body))


def events(app: App, kind: str) -> list[Event]:
    with app.sessions() as s:
        return list(s.scalars(select(Event).where(Event.kind == kind).order_by(Event.id)))


def count(app: App, model: type, *where: object) -> int:
    with app.sessions() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where)) or 0  # type: ignore[arg-type]


# --- links ---------------------------------------------------------------------------------


def test_tokens_bind_ticket_score_and_secret() -> None:
    subject = answer_subject("s" * 32, "csat", 42, 4)
    assert "[#42]" in subject and "csat=4" in subject.split()
    parsed = parse_answer(f"Re: {subject}")
    assert parsed is not None and (parsed.ticket_id, parsed.kind, parsed.score) == (42, "csat", 4)
    assert token_ok("s" * 32, parsed)
    assert not token_ok("t" * 32, parsed)
    forged = parse_answer(subject.replace("csat=4", "csat=5"))
    assert forged is not None and not token_ok("s" * 32, forged)
    other = parse_answer(subject.replace("[#42]", "[#43]"))
    assert other is not None and not token_ok("s" * 32, other)
    assert parse_answer("Order late [#42]") is None
    assert parse_answer(f"Survey [#1] csat=9 key={token('x', 'csat', 1, 9)}").score == -1  # type: ignore[union-attr]
    optout = parse_answer(answer_subject("s" * 32, "csat", 42, "optout"))
    assert optout is not None and optout.opt_out and token_ok("s" * 32, optout)


# --- the survey ----------------------------------------------------------------------------


def test_solved_ticket_gets_one_survey_and_the_answer_is_recorded_quietly(app: App) -> None:
    tid = solved_ticket(app)
    assert job_surveys(app) == {"surveys_sent": 1, "surveys_skipped": 0}
    assert job_surveys(app) == {"surveys_sent": 0, "surveys_skipped": 0}  # once per ticket
    [msg] = surveys_out(app)
    assert msg["To"] == CUSTOMER and f"[#{tid}]" in msg["Subject"]
    assert msg["Auto-Submitted"] == "auto-replied" and msg["Content-Language"] == "en"
    found = links(msg)
    for n in range(1, 6):
        assert subject_for(msg, f"csat={n}").startswith(f"Survey [#{tid}]")
    assert any("csat=optout" in s for s in found) and len(found) == 6
    assert all(u.startswith("mailto:support@example.com?subject=") for u in found.values())
    html = msg.get_body(("html",))
    assert html is not None and 'href="mailto:support@example.com?subject=' in html.get_content()
    with app.sessions() as s:
        before = s.get_one(Ticket, tid)
        last_customer, outbox_rows = before.last_customer_at, s.scalar(
            select(func.count()).select_from(OutboxRow))
        count_before = list_tickets(s, "solved")[0]["message_count"]
    answer(app, "Re: " + subject_for(msg, "csat=4"),
           body="Quick and friendly, thank you!\n\nOn Mon, Ayse wrote:\n> It is on its way.")
    [csat] = events(app, "csat")
    assert csat.ticket_id == tid and csat.detail["score"] == 4
    assert csat.detail["comment"] == "Quick and friendly, thank you!"
    assert csat.detail["agent"] == "ayse@example.com"
    with app.sessions() as s:
        t = s.get_one(Ticket, tid)
        assert t.status == "solved" and t.last_customer_at == last_customer  # not reopened
        assert s.scalar(select(func.count()).select_from(OutboxRow)) == outbox_rows  # no reply
        assert list_tickets(s, "solved")[0]["message_count"] == count_before  # not counted
        assert s.scalar(select(Survey.score).where(Survey.ticket_id == tid)) == 4
    assert not events(app, "reopened") and not events(app, "auto_reply_suppressed")
    # the same link again, and another score: both ignored with a reason, still no mail
    answer(app, subject_for(msg, "csat=4"))
    answer(app, subject_for(msg, "csat=1"))
    reasons = [e.detail["reason"] for e in events(app, "survey_ignored")]
    assert len(reasons) == 2 and all(r.startswith("reused") for r in reasons)
    assert count(app, OutboxRow) == outbox_rows
    assert [e.detail["score"] for e in events(app, "csat")] == [4]


def test_bad_token_and_unsent_survey_are_ignored_with_a_reason(app: App) -> None:
    tid = solved_ticket(app)
    job_surveys(app)
    [msg] = surveys_out(app)
    good = subject_for(msg, "csat=5")
    answer(app, good.replace("csat=5", "csat=3"))  # someone edits the score
    answer(app, re.sub(r"key=\w+", "key=" + "0" * 20, good))
    answer(app, good.replace("csat=5", "nps=5"))  # no NPS asked (and a wrong token)
    with app.sessions() as s:
        secret = s.get_one(Setting, "csat_secret").value
    answer(app, answer_subject(secret, "nps", tid, 8))  # valid token, but no NPS was sent
    reasons = [e.detail["reason"] for e in events(app, "survey_ignored")]
    assert reasons[:3] == ["bad-token"] * 3 and reasons[3].startswith("no-survey")
    assert not events(app, "csat")
    with app.sessions() as s:
        assert s.get_one(Ticket, tid).status == "solved"


def test_survey_in_the_customers_language_and_per_customer_limit(app: App) -> None:
    solved_ticket(app, 1, subject="Sipariş gecikti",
                  body="Merhaba, siparişim hâlâ gelmedi, ne zaman kargoya verilecek acaba?")
    job_surveys(app)
    [msg] = surveys_out(app)
    assert msg["Content-Language"] == "tr" and "Sizce nasıldık?" in msg["Subject"]
    assert "4 - memnunum" in msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    app.clock = FixedClock(app.clock.now() + timedelta(days=3))
    solved_ticket(app, 2, subject="Another question")
    assert job_surveys(app) == {"surveys_sent": 0, "surveys_skipped": 1}
    with app.sessions() as s:
        assert "csat.per_customer_days" in (s.scalar(select(Survey.reason).where(
            Survey.status == "skipped")) or "")
    app.clock = FixedClock(app.clock.now() + timedelta(days=15))
    solved_ticket(app, 3, subject="Third question")
    assert job_surveys(app)["surveys_sent"] == 1


def test_opt_out_link_stops_future_surveys(app: App) -> None:
    solved_ticket(app, 1)
    job_surveys(app)
    [msg] = surveys_out(app)
    answer(app, subject_for(msg, "csat=optout"))
    assert len(events(app, "survey_opt_out")) == 1
    with app.sessions() as s:
        assert s.scalar(select(Customer.survey_opt_out_at)) is not None
    app.clock = FixedClock(app.clock.now() + timedelta(days=30))
    solved_ticket(app, 2, subject="Later question")
    assert job_surveys(app) == {"surveys_sent": 0, "surveys_skipped": 1}


def test_no_survey_without_agent_reply_or_for_old_solves(
        db_url: str, tmp_path: Path) -> None:
    app = make_app(tmp_path, db_url)
    feed(app, raw_mail(body="Never mind, found it."))
    with app.sessions.begin() as s:
        set_status(s, s.get_one(Ticket, 1), "solved", now=app.clock.now(), actor="ayse")
    assert job_surveys(app) == {"surveys_sent": 0, "surveys_skipped": 1}
    solved_ticket(app, 2, frm="Bob <bob@example.org>")
    app.clock = FixedClock(app.clock.now() + timedelta(hours=49))  # csat.within_hours
    assert job_surveys(app) == {"surveys_sent": 0, "surveys_skipped": 0}
    with app.sessions() as s:
        assert s.scalar(select(Survey.reason)) == "no agent reply to rate"


def test_disabled_sends_nothing(db_url: str, tmp_path: Path) -> None:
    app = make_app(tmp_path, db_url, "[csat]\nenabled = false\n")
    solved_ticket(app)
    assert job_surveys(app) == {}
    assert count(app, OutboxRow, OutboxRow.kind == "survey") == 0


def test_configured_secret_signs_the_links(db_url: str, tmp_path: Path) -> None:
    app = make_app(tmp_path, db_url, '[csat]\nsecret_env = "SURVEY_KEY"\n',
                   environ={"SURVEY_KEY": "k" * 32})
    tid = solved_ticket(app)
    job_surveys(app)
    [msg] = surveys_out(app)
    assert subject_for(msg, "csat=5") == answer_subject("k" * 32, "csat", tid, 5)
    assert count(app, Setting) == 0  # nothing generated


def test_nps_and_the_figures_overall_and_per_agent(db_url: str, tmp_path: Path) -> None:
    app = make_app(tmp_path, db_url, "[csat]\nnps = true\nper_customer_days = 0\n")
    scores = [(5, 10), (4, 9), (2, 3)]
    for n in range(1, len(scores) + 1):
        solved_ticket(app, n, frm=f"C{n} <c{n}@example.org>", subject=f"Question {n}")
    solved_ticket(app, 4, frm="C4 <c4@example.org>", subject="Question 4")  # never answers
    job_surveys(app)
    mails = surveys_out(app)
    assert len(mails) == 4
    for n, (msg, (csat, nps)) in enumerate(zip(mails, scores, strict=False), start=1):
        answer(app, subject_for(msg, f"csat={csat}"), frm=f"C{n} <c{n}@example.org>")
        answer(app, subject_for(msg, f"nps={nps}"), frm=f"C{n} <c{n}@example.org>")
    assert [e.detail["score"] for e in events(app, "nps")] == [10, 9, 3]
    with app.sessions() as s:
        stats = compute_stats(s, app.automation().calendar, utc(2026, 11, 2), utc(2026, 11, 3),
                              app.clock.now() + timedelta(hours=1),
                              agents={"ayse@example.com": "Ayşe"})
    assert stats["csat"] == {"satisfied_pct": round(2 / 3, 4), "responses": 3,
                             "response_rate": 0.75, "surveys_sent": 4}
    assert stats["nps"] == round(100 * (2 - 1) / 3, 1)
    assert stats["nps_detail"] == {"responses": 3, "promoters": 2, "passives": 0,
                                   "detractors": 1}
    [ayse] = [a for a in stats["per_agent"] if a["agent"] == "ayse@example.com"]
    assert ayse["csat"] == {"satisfied_pct": round(2 / 3, 4), "responses": 3}
    assert ayse["nps"] == stats["nps"] and ayse["replies"] == 4
    with app.sessions() as s:
        digest = build_digest(s, app.automation().calendar, date(2026, 11, 2), "UTC",
                              utc(2026, 11, 3, 8), agents={"ayse@example.com": "Ayşe"},
                              templates=REPO / "maild" / "defaults" / "templates" / "digest")
    assert "- Satisfaction (CSAT): 67% satisfied of 3 answers, response rate 75% of 4 " \
           "surveys sent; NPS +33 (3 answers)" in digest.text
    lines = digest.text.splitlines()
    assert "  Ayşe <ayse@example.com>: 4 replies, 4 first responses, FRT median 0s, " \
           "CSAT 67% (3), NPS +33" in lines, digest.text
    assert "67% satisfied of 3 answers" in digest.html and "CSAT 67% (3)" in digest.html
    app.clock = FixedClock(app.clock.now() + timedelta(days=1))
    solved_ticket(app, 5, frm="C1 <c1@example.org>", subject="Question 5")
    job_surveys(app)
    body = surveys_out(app)[-1].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "nps=" not in unquote(body)  # NPS at most once per nps_per_customer_days


def test_survey_waits_for_the_solving_reply_to_go_out(app: App) -> None:
    feed(app, raw_mail(frm=CUSTOMER, msgid="<w1@example.org>", body="My order is late"))
    with app.sessions.begin() as s:
        reply = prepare_reply(s, app.automation(), 1, "resolved", agent=Agent("Ayşe"),
                              now=app.clock.now())
        send_reply(s, reply, now=app.clock.now(), actor="Ayşe")  # queued, and solved
    assert job_surveys(app) == {"surveys_sent": 0, "surveys_skipped": 0}  # not yet
    assert count(app, Survey) == 0
    deliver(app)  # the ETA reply and the answer go out; the Sent copy is not read yet
    assert job_surveys(app) == {"surveys_sent": 1, "surveys_skipped": 0}
    with app.sessions() as s:
        assert s.scalar(select(Survey.agent)) == "support@example.com"


def test_an_answer_from_someone_else_rates_nothing(app: App) -> None:
    tid = solved_ticket(app)
    job_surveys(app)
    [msg] = surveys_out(app)
    answer(app, subject_for(msg, "csat=1"), frm="Mallory <mallory@example.net>")
    assert not events(app, "csat") and not events(app, "survey_ignored")
    with app.sessions() as s:
        assert s.scalar(select(Survey.status).where(Survey.ticket_id == tid)) == "sent"
        assert s.scalar(select(func.count()).select_from(Ticket)) == 1  # opened nothing
    answer(app, subject_for(msg, "csat=5"))  # the customer's own answer still counts
    assert [e.detail["score"] for e in events(app, "csat")] == [5]
