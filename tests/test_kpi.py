"""KPIs over a hand-built week (Mon 2026-10-26 .. Sun 2026-11-01, Europe/Istanbul,
Mon-Fri 09:00-18:00, Thu 10-29 Republic Day closed), on SQLite and PostgreSQL.

Istanbul is UTC+3 all year, so 09:00-18:00 local is 06:00-15:00 UTC. Every
expected value below is computed by hand in the comments next to it.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.orm import Session

from maild.calendar import BusinessCalendar
from maild.report.kpi import compute_stats, percentile, waiting
from maild.store.models import Customer, Event, Mailbox, MessageRow, Ticket
from maild.views import list_tickets
from tests.builders import migrated_sessions

IST = ZoneInfo("Europe/Istanbul")
CAL = BusinessCalendar("Europe/Istanbul", "Mon-Fri 09:00-18:00", "TR")
# display names of the agents' replies. Alice writes from her own address (support in
# Cc: an agent reply), Bob from the shared support mailbox (Sent), Carol from sales.
ALICE, BOB, CAROL = ("Alice (Example Support)", "Bob (Example Support)", "Carol (Sales)")
FROM = {ALICE: "alice@example.com", BOB: "support@example.com", CAROL: "sales@example.com"}
AGENTS = {"Alice@Example.com": "Alice"}  # the [agents] table (keys are matched lower-case)
# per_agent entries of agents nobody rated in the period (maild.surveys.figures)
NO_SURVEYS = {"csat": {"satisfied_pct": None, "responses": 0}, "nps": None}
_ids = itertools.count(1)


def L(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    """A local Istanbul wall time in 2026, as aware UTC."""
    return datetime(2026, month, day, hour, minute, tzinfo=IST).astimezone(UTC)


# Ticket ids follow the labels: T1 is id 1 ... T13 is id 13.
SINCE, UNTIL, NOW = L(10, 26, 0), L(11, 2, 0), L(11, 2, 8)


class World:
    def __init__(self, s: Session) -> None:
        self.s = s
        self.support = self._mailbox("support@example.com")
        self.sales = self._mailbox("sales@example.com")
        self.customer = Customer(address="ann@example.org", name="Ann", created_at=L(10, 1, 0))
        s.add(self.customer)
        s.flush()

    def _mailbox(self, address: str) -> int:
        mb = Mailbox(address=address, created_at=L(10, 1, 0))
        self.s.add(mb)
        self.s.flush()
        return mb.id

    def ticket(self, created: datetime, due: datetime | None, *, mailbox: int | None = None,
               status: str = "open", subject: str = "Help") -> Ticket:
        t = Ticket(mailbox_id=mailbox or self.support, customer_id=self.customer.id,
                   subject=subject, normalized_subject=subject.lower(), status=status,
                   priority="normal", tags=[], sla_due_at=due, created_at=created,
                   updated_at=created, agent_replies=0, sla_breached=False, suggestions=[])
        self.s.add(t)
        self.s.flush()
        self.msg(t, "in", created)
        return t

    def msg(self, t: Ticket, direction: str, at: datetime, agent: str = "",
            auto: bool = False, sender_class: str | None = None,
            machine_kind: str | None = None, addr: str | None = None) -> None:
        addr = addr or ("ann@example.org" if direction == "in" else
                        FROM.get(agent, "support@example.com"))
        self.s.add(MessageRow(ticket_id=t.id, mailbox_id=t.mailbox_id, auto=auto,
                              message_id=f"<m{next(_ids)}@x>", direction=direction,
                              sender_class=sender_class or (
                                  "customer" if direction == "in" else
                                  "machine" if auto else "agent"),
                              machine_kind=machine_kind,
                              from_addr=addr, from_name=agent or "Ann", arrived_at=at,
                              created_at=at))

    def reply(self, t: Ticket, at: datetime, agent: str, addr: str | None = None) -> None:
        self.msg(t, "out", at, agent, addr=addr)
        t.agent_replies += 1
        if t.first_response_at is None:
            t.first_response_at = at

    def event(self, t: Ticket, at: datetime, kind: str, **detail: Any) -> None:
        self.s.add(Event(ticket_id=t.id, at=at, kind=kind, actor="maild", detail=detail))

    def solve(self, t: Ticket, at: datetime) -> None:
        self.event(t, at, "status", **{"from": t.status, "to": "solved"})
        t.status, t.solved_at = "solved", at

    def reopen(self, t: Ticket, at: datetime) -> None:
        self.msg(t, "in", at)
        self.event(t, at, "reopened", previous="solved")
        t.status, t.solved_at = "open", None


def build_week(s: Session) -> World:
    w = World(s)
    # T1 Mon 10:00, auto-reply (ignored), Alice 11:30 (FRT 1.5h wall = business = 5400),
    # due Mon 14:00 (attained), solved Mon 12:00 with one reply: OTR.
    t1 = w.ticket(L(10, 26, 10), L(10, 26, 14))
    w.msg(t1, "out", L(10, 26, 10, 1), "Support", auto=True)
    w.reply(t1, L(10, 26, 11, 30), ALICE)
    w.solve(t1, L(10, 26, 12))
    # T2 created Fri 10-23 17:00 (before the period), due Mon 12:00 (1h Fri + 3h Mon),
    # Bob Mon 09:30: FRT wall 64.5h = 232200, business 1h + 0.5h = 5400, attained.
    # Second Bob reply Mon 11:00 after a customer message; solved Tue 10:00: not OTR.
    t2 = w.ticket(L(10, 23, 17), L(10, 26, 12))
    w.reply(t2, L(10, 26, 9, 30), BOB)
    w.msg(t2, "in", L(10, 26, 10))
    w.reply(t2, L(10, 26, 11), BOB)
    w.solve(t2, L(10, 27, 10))
    # T3 Sat 10-31 10:00 (weekend), due Mon 11-02 13:00 (outside), unanswered:
    # backlog age 38h -> "1-3d"; waiting 38h.
    w.ticket(L(10, 31, 10), L(11, 2, 13))
    # T4 Wed 16:00 (holiday Thu in between), due Fri 11:00 (2h Wed + 2h Fri), Alice Fri
    # 10:00: FRT wall 42h = 151200, business 2h + 1h = 10800, attained. Solved Fri
    # 10:30, customer "thanks" Fri 12:00 (reopened), solved again Fri 13:00: OTR.
    t4 = w.ticket(L(10, 28, 16), L(10, 30, 11))
    w.reply(t4, L(10, 30, 10), ALICE)
    w.solve(t4, L(10, 30, 10, 30))
    w.reopen(t4, L(10, 30, 12))
    w.solve(t4, L(10, 30, 13))
    # T5 Tue 09:00, due Tue 13:00, Bob Tue 15:00: FRT 6h = 21600 both, breach.
    # Customer writes Wed 10:00 and Thu 10:00, unanswered: waiting since Wed 10:00
    # = 110h (not since its answered first message); backlog age 135h -> "3-7d".
    t5 = w.ticket(L(10, 27, 9), L(10, 27, 13))
    w.reply(t5, L(10, 27, 15), BOB)
    w.msg(t5, "in", L(10, 28, 10))
    w.msg(t5, "in", L(10, 29, 10))
    # T6 Thu 10:00 (holiday), due Fri 13:00, never answered: breach; age 86h -> "3-7d".
    w.ticket(L(10, 29, 10), L(10, 30, 13))
    # T7 Mon 15:00, due Tue 10:00, solved Mon 16:00 with no reply: not OTR, and not a
    # breach (solved before its due time: the clock stopped).
    t7 = w.ticket(L(10, 26, 15), L(10, 27, 10))
    w.solve(t7, L(10, 26, 16))
    # T8 Tue 11:00, due Tue 15:00, Alice 12:00 (FRT 3600 both), solved 12:30, reopened
    # Wed 09:00, Alice again Wed 10:00, solved Wed 11:00: two replies, not OTR.
    t8 = w.ticket(L(10, 27, 11), L(10, 27, 15))
    w.reply(t8, L(10, 27, 12), ALICE)
    w.solve(t8, L(10, 27, 12, 30))
    w.reopen(t8, L(10, 28, 9))
    w.reply(t8, L(10, 28, 10), ALICE)
    w.solve(t8, L(10, 28, 11))
    # T9 (sales mailbox) Fri 09:00, due 13:00, Carol 09:20 (1200 both), solved 09:30: OTR.
    t9 = w.ticket(L(10, 30, 9), L(10, 30, 13), mailbox=w.sales)
    w.reply(t9, L(10, 30, 9, 20), CAROL)
    w.solve(t9, L(10, 30, 9, 30))
    # T10 spam created Mon with a due time in the period: excluded everywhere.
    w.ticket(L(10, 26, 9), L(10, 26, 13), status="filtered")
    # T11 created and solved Thu 10-22 (Alice 11:00), reopened Tue 10-27 14:00, still open:
    # backlog ">7d", waiting since Tue 14:00 = 5d 10h = 130h: the longest wait (from
    # its first, answered message it would be 254h).
    t11 = w.ticket(L(10, 22, 10), L(10, 22, 14))
    w.reply(t11, L(10, 22, 11), ALICE)
    w.solve(t11, L(10, 22, 12))
    w.reopen(t11, L(10, 27, 14))
    # T12 Fri 11:00, due 15:00, Bob 14:00 (10800 both), solved Fri 15:00; reopened and
    # answered again on Mon 11-02 after `until`: solved at the period's end, one reply
    # up to then -> OTR.
    t12 = w.ticket(L(10, 30, 11), L(10, 30, 15))
    w.reply(t12, L(10, 30, 14), BOB)
    w.solve(t12, L(10, 30, 15))
    w.reopen(t12, L(11, 2, 7))
    w.reply(t12, L(11, 2, 7, 30), BOB)
    # T13 Sun 11-01 22:00, unanswered: backlog "<4h" (2h old at until).
    w.ticket(L(11, 1, 22), L(11, 2, 13))
    s.commit()
    return w


@pytest.fixture
def week(db_url: str) -> dict[str, Any]:
    sessions = migrated_sessions(db_url)
    with sessions() as s:
        build_week(s)
        return compute_stats(s, CAL, SINCE, UNTIL, NOW, agents=AGENTS)


def test_counts_and_rates(week: dict[str, Any]) -> None:
    assert (week["since"], week["until"]) == ("2026-10-25T21:00:00Z", "2026-11-01T21:00:00Z")
    # created in period, spam excluded: T1 T3 T4 T5 T6 T7 T8 T9 T12 T13
    assert week["tickets_created"] == 10
    # first replies in period: T1 T2 T4 T5 T8 T9 T12 (T11's was on 10-22)
    assert week["first_responses"] == 7
    # solved in period and solved at its end: T1 T2 T4 T7 T8 T9 T12; OTR: T1 T4 T9 T12
    assert week["otr_rate"] == 4 / 7
    # of the 10 created, solved at the end: T1 T4 T7 T8 T9 T12
    assert week["resolution_rate"] == 6 / 10
    # reopened events in period: T4 Fri, T8 Wed, T11 Tue (T12's is after until)
    assert week["reopened"] == 3


def test_frt(week: dict[str, Any]) -> None:
    # business: 1200 3600 5400 5400 10800 10800 21600; median = x[3]; p90 at h = 6*0.9
    # = 5.4: 10800 + 0.4*(21600-10800) = 15120; mean 58800/7 = 8400
    assert week["frt_business_seconds"] == {"median": 5400, "p90": 15120, "mean": 8400}
    # wall: 1200 3600 5400 10800 21600 151200 232200; p90 = 151200 + 0.4*81000 = 183600;
    # mean 426000/7 = 60857.142857.. -> 60857.143
    assert week["frt_wall_seconds"] == {"median": 10800, "p90": 183600, "mean": 60857.143}


def test_recorded_first_response_figures_are_used(db_url: str) -> None:
    """The writer records FRT with the first response; stats reads it instead of
    computing it, and computes only the tickets without it (NULL: older rows)."""
    sessions = migrated_sessions(db_url)
    with sessions() as s:
        build_week(s)
        computed = compute_stats(s, CAL, SINCE, UNTIL, NOW)
        # record T1 T2 T4 as the writer would (hand values from build_week): same stats
        for tid, wall, business, who in ((1, 5400, 5400, ALICE), (2, 232200, 5400, BOB),
                                         (4, 151200, 10800, ALICE)):
            t = s.get_one(Ticket, tid)
            t.frt_wall_seconds, t.frt_business_seconds, t.first_responder = wall, business, who
        s.flush()
        assert compute_stats(s, CAL, SINCE, UNTIL, NOW) == computed
        # a recorded figure wins over the messages: T4 recorded as 4h of business time.
        # The recorded first_responder (a display name) does not say who: the reply at
        # first_response_at does (its From address)
        s.get_one(Ticket, 4).frt_business_seconds = 14400
        s.get_one(Ticket, 4).first_responder = "Someone Else"
        s.flush()
        stats = compute_stats(s, CAL, SINCE, UNTIL, NOW)
    # business: 1200 3600 5400 5400 10800 14400 21600 -> median 5400, mean 62400/7
    assert stats["frt_business_seconds"]["mean"] == round(62400 / 7, 3)
    assert stats["frt_wall_seconds"] == computed["frt_wall_seconds"]
    agents = {a["agent"]: a for a in stats["per_agent"]}
    assert "Someone Else" not in agents
    # Alice: T1 5400, T4 14400 (recorded), T8 3600 -> median 5400
    assert (agents["alice@example.com"]["first_responses"],
            agents["alice@example.com"]["frt_business_median"]) == (3, 5400)


def test_sla(week: dict[str, Any]) -> None:
    # attained: all 7 first responses but T5's; breaches: T5 (late), T6 (none); T7 was
    # solved without a reply before its due time
    assert week["sla"] == {"attained_pct": 6 / 7, "breaches": 2}


def test_backlog_and_longest_wait(week: dict[str, Any]) -> None:
    # open at until: T3 (38h), T5 (135h), T6 (86h), T11 (10d 14h), T13 (2h)
    assert week["backlog"] == {"total": 5, "age_buckets": {
        "<4h": 1, "4-24h": 0, "1-3d": 1, "3-7d": 2, ">7d": 1}}
    # T11: unanswered since its reopening Tue 10-27 14:00 -> 130h
    assert week["longest_wait_seconds"] == 130 * 3600


def test_per_agent_and_mailbox(week: dict[str, Any]) -> None:
    # Keyed by the reply's From address; named from [agents], else by the display name.
    # Alice: T1, T4, T8 x2 = 4 replies; first responses T1 5400, T4 10800, T8 3600.
    # Bob (the support mailbox): T2 x2, T5, T12 = 4 (T12's Monday reply is after until);
    # FR T2 5400, T5 21600, T12 10800. Carol (the sales mailbox): T9 1200.
    assert week["per_agent"] == [
        {"agent": "alice@example.com", "name": "Alice", "replies": 4, "first_responses": 3,
         "frt_business_median": 5400, **NO_SURVEYS},
        {"agent": "support@example.com", "name": BOB, "replies": 4, "first_responses": 3,
         "frt_business_median": 10800, **NO_SURVEYS},
        {"agent": "sales@example.com", "name": CAROL, "replies": 1, "first_responses": 1,
         "frt_business_median": 1200, **NO_SURVEYS},
    ]
    # support: business 3600 5400 5400 10800 10800 21600 -> median (5400+10800)/2 = 8100
    per_mailbox = [{k: v for k, v in m.items() if k not in ("sla_breaches", "backlog")}
                   for m in week["per_mailbox"]]
    assert per_mailbox == [
        {"mailbox": "support@example.com", "tickets_created": 9, "first_responses": 6,
         "frt_business_median": 8100, "sla_attained_pct": 5 / 6},
        {"mailbox": "sales@example.com", "tickets_created": 1, "first_responses": 1,
         "frt_business_median": 1200, "sla_attained_pct": 1.0},
    ]
    # breaches and backlog per mailbox add up to the figures for all of them
    assert sum(m["sla_breaches"] for m in week["per_mailbox"]) == week["sla"]["breaches"]
    assert sum(m["backlog"] for m in week["per_mailbox"]) == week["backlog"]["total"]
    assert week["per_mailbox"][1]["sla_breaches"] == 0


def test_mailbox_filter_and_replay_clock(db_url: str) -> None:
    with migrated_sessions(db_url)() as s:
        w = build_week(s)
        sales = compute_stats(s, CAL, SINCE, UNTIL, NOW, mailbox_id=w.sales)
        assert (sales["tickets_created"], sales["otr_rate"], sales["resolution_rate"]) == (
            1, 1.0, 1.0)
        assert sales["backlog"]["total"] == 0 and sales["longest_wait_seconds"] is None
        # seen at Tue 10-27 00:00 local: only Monday happened. Created: T1 T7 (T10 spam);
        # first responses T1 (5400), T2 (5400); solved T1 (OTR), T7 (not).
        monday = compute_stats(s, CAL, SINCE, UNTIL, L(10, 27, 0))
        assert (monday["tickets_created"], monday["first_responses"]) == (2, 2)
        assert monday["otr_rate"] == 0.5 and monday["resolution_rate"] == 1.0
        # T7's due (Tue 10:00) has not passed yet; backlog: T2 only (solved Tue), T11 is
        # still solved (its reopening is on Tuesday); T2 was answered after its last message
        assert monday["sla"] == {"attained_pct": 1.0, "breaches": 0}
        assert monday["backlog"]["total"] == 1 and monday["reopened"] == 0
        assert monday["longest_wait_seconds"] is None


def test_empty_period(db_url: str) -> None:
    with migrated_sessions(db_url)() as s:
        stats = compute_stats(s, CAL, SINCE, UNTIL, NOW)
    none3 = {"median": None, "p90": None, "mean": None}
    assert stats["frt_business_seconds"] == stats["frt_wall_seconds"] == none3
    assert stats["sla"] == {"attained_pct": None, "breaches": 0}
    assert (stats["otr_rate"], stats["resolution_rate"], stats["longest_wait_seconds"]) == (
        None, None, None)
    assert stats["per_agent"] == stats["per_mailbox"] == []
    assert stats["filtered"] == {"total": 0, "by_kind": {
        "bounce": 0, "auto-reply": 0, "bulk": 0, "notification": 0, "report": 0}}
    assert stats["delivery_failures"] == 0


def add_machine_mail(w: World) -> Ticket:
    """Machine mail all over the week (stored `auto` as ingest stores it), where it would
    move a figure if anything counted it; returns the filtered ticket it opened."""
    s = w.s
    t1, t3, t5 = (s.get_one(Ticket, i) for i in (1, 3, 5))
    # T1: an auto-reply before the customer's first message (would move the FRT start,
    # 5400 -> 7200) and a vacation reply after it was solved (would be a waiting message)
    w.msg(t1, "in", L(10, 26, 8), "Ann", auto=True, sender_class="machine",
          machine_kind="auto-reply")
    w.msg(t1, "in", L(10, 26, 13), "Ann", auto=True, sender_class="machine",
          machine_kind="auto-reply")
    # T3 (unanswered): an out-of-office on 10-20, before the period: as a customer message
    # it would be the longest wait (12 days); maild's own ETA reply (out, machine, no
    # kind) would be an agent reply answering it
    w.msg(t3, "in", L(10, 20, 9), "Ann", auto=True, sender_class="machine",
          machine_kind="auto-reply")
    w.msg(t3, "out", L(10, 31, 10, 1), "Support", auto=True)
    # T5: a bounce of Bob's reply, and its delivery_failed event
    w.msg(t5, "in", L(10, 27, 15, 5), "Mail Delivery System", auto=True,
          sender_class="machine", machine_kind="bounce", addr="mailer-daemon@example.org")
    w.event(t5, L(10, 27, 15, 5), "delivery_failed", address="ann@example.org",
            status="5.1.1", diagnostic="smtp; 550 5.1.1 user unknown", message_id="<b1@x>")
    # a filtered ticket opened by a newsletter, with a notification joining it, a due
    # time, an agent's reply and a bounce event of its own; and a bounce after `until`
    f = w.ticket(L(10, 27, 8), L(10, 27, 12), status="filtered", subject="Newsletter")
    s.execute(MessageRow.__table__.update().where(MessageRow.ticket_id == f.id).values(
        auto=True, sender_class="machine", machine_kind="bulk"))
    w.msg(f, "in", L(10, 27, 9), "Shop", auto=True, sender_class="machine",
          machine_kind="notification", addr="no-reply@shop.example")
    w.reply(f, L(10, 27, 10), ALICE)
    w.event(f, L(10, 27, 10, 5), "delivery_failed", address="list@news.example",
            status="5.0.0", diagnostic="", message_id="<b2@x>")
    w.event(t5, L(11, 2, 7), "delivery_failed", address="ann@example.org", status="5.1.1",
            diagnostic="", message_id="<b3@x>")
    s.commit()
    return f


def test_machine_mail_counts_nowhere(db_url: str) -> None:
    """Machine mail (auto) and filtered tickets are outside every figure: adding them
    changes only `filtered` and `delivery_failures`."""
    with migrated_sessions(db_url)() as s:
        w = build_week(s)
        before = compute_stats(s, CAL, SINCE, UNTIL, NOW, agents=AGENTS)
        counts = {t["id"]: t["message_count"] for t in list_tickets(s)}
        add_machine_mail(w)
        after = compute_stats(s, CAL, SINCE, UNTIL, NOW, agents=AGENTS)
        monday = compute_stats(s, CAL, SINCE, L(10, 27, 0), NOW, agents=AGENTS)
        assert {t["id"]: t["message_count"] for t in list_tickets(s)} == counts
        assert waiting(s, UNTIL, limit=1) == [(11, L(10, 27, 14))]
    # in the week: auto-replies on T1 (Mon 08:00, 13:00), T5's bounce, the newsletter and
    # the notification (T3's is on 10-20; the ETA reply is ours, outbound); failures: T5
    # Tue and the filtered ticket's (the one on Mon 11-02 is after until)
    assert after == {**before, "filtered": {"total": 5, "by_kind": {
        "bounce": 1, "auto-reply": 2, "bulk": 1, "notification": 1, "report": 0}},
        "delivery_failures": 2}
    assert monday["filtered"]["total"] == 2 and monday["delivery_failures"] == 0


def test_per_agent_keyed_by_address_not_display_name(db_url: str) -> None:
    """Everyone signs "Support Team": the From address tells agents apart; the shared
    mailbox's address is one entry whatever names its replies used."""
    with migrated_sessions(db_url)() as s:
        w = World(s)
        # tickets Mon 10-26 10:00, answered at 11..15: business = wall = 3600 .. 18000
        who = [("Support Team", "alice@example.com"), ("Support Team", "bob@example.com"),
               ("Alice", "alice+vip@example.com"), ("Dana", "support@example.com"),
               ("Eve", "support@example.com")]
        tickets = []
        for hour, (name, addr) in enumerate(who, start=11):
            t = w.ticket(L(10, 26, 10), L(10, 26, 14))
            w.reply(t, L(10, 26, hour), name, addr=addr)
            tickets.append(t)
        s.commit()
        computed = compute_stats(s, CAL, SINCE, UNTIL, NOW, agents=AGENTS)
        for t, (name, _addr) in zip(tickets, who, strict=True):  # recorded as ingest does
            assert t.first_response_at is not None
            t.frt_wall_seconds = t.frt_business_seconds = CAL.business_seconds(
                t.created_at, t.first_response_at)
            t.first_responder = name
        s.commit()
        recorded = compute_stats(s, CAL, SINCE, UNTIL, NOW, agents=AGENTS)
    # alice: 3600 and 10800 (a +tag of an [agents] address is that agent) -> 7200;
    # bob "Support Team" 7200; support@: Dana 14400, Eve 18000 -> 16200
    assert computed["per_agent"] == recorded["per_agent"] == [
        {"agent": "alice@example.com", "name": "Alice", "replies": 2, "first_responses": 2,
         "frt_business_median": 7200, **NO_SURVEYS},
        {"agent": "support@example.com", "name": "Dana, Eve", "replies": 2,
         "first_responses": 2, "frt_business_median": 16200, **NO_SURVEYS},
        {"agent": "bob@example.com", "name": "Support Team", "replies": 1,
         "first_responses": 1, "frt_business_median": 7200, **NO_SURVEYS},
    ]


def test_percentile_linear_method() -> None:
    assert percentile([], 0.5) is None
    assert percentile([7.0], 0.9) == 7.0
    assert percentile([1.0, 3.0], 0.5) == 2.0
    assert percentile([4.0, 1.0, 3.0, 2.0], 0.9) == pytest.approx(3.7)  # h = 2.7
    assert percentile([10.0 * i for i in range(1, 11)], 0.9) == pytest.approx(91.0)


def test_waiting_since(db_url: str) -> None:
    with migrated_sessions(db_url)() as s:
        build_week(s)
        top = waiting(s, UNTIL, limit=3)
    # oldest first: T11 (Tue 14:00), T5 (Wed 10:00, its second message), T6 (Thu 10:00)
    assert [at for _, at in top] == [L(10, 27, 14), L(10, 28, 10), L(10, 29, 10)]


def test_solved_at_an_instant_is_the_latest_move(db_url: str) -> None:
    """`solved_at(end)`: a ticket counts as solved at `end` when its latest move before
    `end` went into solved. An undo (reopened, or a status event out of solved) at the
    same instant as a solve wins; a solve with no event (solved before status events
    existed) counts by its solved_at; moves at or after `end` are not seen yet."""
    from sqlalchemy import select

    from maild.report.kpi import is_solved, solved_at, solved_during

    with migrated_sessions(db_url)() as s:
        w = World(s)
        plain = w.ticket(L(10, 26, 9), None)
        w.solve(plain, L(10, 26, 10))
        tie = w.ticket(L(10, 26, 9), None)
        w.solve(tie, L(10, 26, 10))
        w.reopen(tie, L(10, 26, 10))
        again = w.ticket(L(10, 26, 9), None)
        w.solve(again, L(10, 26, 10))
        w.reopen(again, L(10, 26, 11))
        w.solve(again, L(10, 26, 12))
        legacy = w.ticket(L(10, 26, 9), None, status="solved")
        legacy.solved_at = L(10, 26, 10)
        moved_out = w.ticket(L(10, 26, 9), None)
        w.solve(moved_out, L(10, 26, 10))
        w.event(moved_out, L(10, 26, 11), "status", **{"from": "solved", "to": "pending"})
        moved_out.status, moved_out.solved_at = "pending", None
        never = w.ticket(L(10, 26, 9), None)
        w.event(never, L(10, 26, 10), "reopened", previous="open")
        s.flush()

        def at(end: datetime) -> set[int]:
            found = set(s.scalars(solved_at(end)))
            # the per-ticket form `waiting` uses says the same of every ticket
            assert set(s.scalars(select(Ticket.id).where(is_solved(end)))) == found
            return found

        assert at(L(10, 26, 10)) == set()  # every move is at or after that instant
        assert at(L(10, 26, 10, 30)) == {plain.id, again.id, legacy.id, moved_out.id}
        assert at(L(10, 26, 11, 30)) == {plain.id, legacy.id}
        assert at(L(10, 26, 13)) == {plain.id, again.id, legacy.id}
        during = set(s.scalars(select(solved_during(L(10, 26, 11, 30), L(10, 26, 13))
                                      .subquery().c.tid)))
        assert during == {again.id}  # solved in the window and still solved at its end
