"""A real shared mailbox's mail mix through ingest and the rules: machine mail,
the team's own mail, forwards, maild's own mail, bounces of our replies.

Each test stores raw messages through the app's real ingest wiring (agents and
company domains from the config) on SQLite and PostgreSQL, then reads tickets,
messages, events and the outbox."""

from __future__ import annotations

import email
import email.policy
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from maild.app import App, build_app
from maild.clock import FixedClock
from maild.compose import compose
from maild.config import load_config
from maild.ingest import IngestItem
from maild.recover import recover_ticket
from maild.store.db import upgrade
from maild.store.models import Customer, Event, MessageRow, OutboxRow, Ticket
from maild.views import list_tickets, show_ticket
from tests.builders import raw_mail, utc
from tests.test_replying import deliver, write_config

SUPPORT = "support@example.com"
NOW = utc(2026, 11, 2, 10)


TEAM = """
[agents]
"ayse@example.com" = "Ayşe Yılmaz"
[team]
domains = ["staff.example.net"]
"""


@pytest.fixture
def app(db_url: str, tmp_path: Path) -> App:
    built = build_app(load_config(write_config(tmp_path, db_url, TEAM)), FixedClock(NOW),
                      environ={})
    upgrade(built.engine)
    return built


_uids = iter(range(1, 10_000))


def ingest(app: App, *raws: bytes, role: str = "inbox") -> None:
    ing = app.ingestor(app.config.mailboxes[0])
    folder = "INBOX" if role == "inbox" else "Sent"
    ing.ingest_batch(role, folder, 1, [IngestItem(next(_uids), r, app.clock.now())
                                       for r in raws])


def later(app: App, minutes: int) -> None:
    assert isinstance(app.clock, FixedClock)
    app.clock.set(app.clock.now() + timedelta(minutes=minutes))


def etas(app: App) -> list[str]:
    with app.sessions() as s:
        return list(s.scalars(select(OutboxRow.recipient).where(OutboxRow.kind == "auto_reply")
                              .order_by(OutboxRow.id)))


def shown(app: App, ticket_id: int) -> dict:
    with app.sessions() as s:
        return show_ticket(s, ticket_id)


def listed(app: App, status: str | None = None) -> list[dict]:
    with app.sessions() as s:
        return list_tickets(s, status)


def kinds(data: dict, kind: str) -> list[dict]:
    return [e for e in data["events"] if e["kind"] == kind]


def solve(app: App, ticket_id: int) -> None:
    from maild.sla import set_status
    with app.sessions.begin() as s:
        set_status(s, s.get_one(Ticket, ticket_id), "solved", app.clock.now())


VACATION = raw_mail(frm="Ann Customer <ann@example.org>", subject="Automatic reply: Re: Order",
                    msgid="<vac1@example.org>", in_reply_to="<agent1@example.com>",
                    extra="Auto-Submitted: auto-replied", body="I am away until Monday.")


def test_customer_vacation_reply_on_a_solved_ticket_changes_nothing(app: App) -> None:
    ingest(app, raw_mail(subject="Order"))
    later(app, 30)
    ingest(app, raw_mail(frm=f"Support <{SUPPORT}>", to="ann@example.org", subject="Re: Order [#1]",
                         msgid="<agent1@example.com>", in_reply_to="<m1@example.org>",
                         date="Mon, 02 Nov 2026 10:30:00 +0000"), role="sent")
    solve(app, 1)
    later(app, 30)
    ingest(app, VACATION)
    data = shown(app, 1)
    assert data["status"] == "solved" and data["message_count"] == 2
    assert kinds(data, "reopened") == [] and data["sla_due_at"] is not None
    vacation = data["messages"][-1]
    assert (vacation["auto"], vacation["class"], vacation["kind"]) == \
        (True, "machine", "auto-reply")
    assert etas(app) == ["ann@example.org"]  # the first message's only


def test_icloud_vacation_opens_only_a_filtered_ticket(app: App) -> None:
    ingest(app, raw_mail(frm="Bo <bo@icloud.example>", subject="Away", msgid="<ic@x>",
                         extra="X-Apple-Action: VACATION", body="On holiday."))
    assert listed(app) == []
    [t] = listed(app, "filtered")
    data = shown(app, t["id"])
    assert data["filtered"]["kind"] == "auto-reply" and data["sla_due_at"] is None
    assert t["message_count"] == 0 and etas(app) == []
    assert [e["mail_kind"] for e in kinds(data, "filtered")] == ["auto-reply"]


def dsn(original_id: str, to: str) -> bytes:
    body = f"""--b1
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example.org. I'm sorry to have to inform you
that your message could not be delivered to one or more recipients.

<{to}>: host mx.example.org said: 550 5.1.1 <{to}>: Recipient address rejected:
    User unknown in virtual mailbox table

--b1
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.org
Arrival-Date: Mon,  2 Nov 2026 10:01:00 +0000

Final-Recipient: rfc822; {to}
Original-Recipient: rfc822;{to}
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.example.org
Diagnostic-Code: smtp; 550 5.1.1 <{to}>: Recipient address rejected: User unknown

--b1
Content-Type: text/rfc822-headers

From: Support <{SUPPORT}>
To: {to}
Subject: Re: Order [#1]
Message-ID: {original_id}

--b1--
"""
    head = ("From: MAILER-DAEMON@mx.example.org (Mail Delivery System)\r\n"
            f"To: {SUPPORT}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
            "Date: Mon, 02 Nov 2026 10:02:00 +0000\r\nMessage-ID: <dsn1@mx.example.org>\r\n"
            "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
            "Content-Type: multipart/report; report-type=delivery-status; boundary=b1\r\n\r\n")
    return head.encode() + body.replace("\n", "\r\n").encode()


def test_bounce_of_our_eta_reply_is_a_delivery_failure_on_its_ticket(app: App) -> None:
    ingest(app, raw_mail(frm="Typo <ann@exmaple.org>", subject="Order"))
    [sent] = deliver(app)
    eta_id = email.message_from_bytes(sent, policy=email.policy.default)["Message-ID"]
    later(app, 2)
    ingest(app, dsn(eta_id, "ann@exmaple.org"))
    assert [t["id"] for t in listed(app)] == [1] and listed(app, "filtered") == []
    data = shown(app, 1)
    [failed] = kinds(data, "delivery_failed")
    assert (failed["address"], failed["status"]) == ("ann@exmaple.org", "5.1.1")
    assert "User unknown" in failed["diagnostic"]
    assert data["messages"][-1]["kind"] == "bounce" and data["message_count"] == 1
    later(app, 60)  # the same address writes again: no ETA reply for a while
    ingest(app, raw_mail(frm="Typo <ann@exmaple.org>", subject="Another", msgid="<m9@x>"))
    suppressed = kinds(shown(app, 2), "auto_reply_suppressed")
    assert suppressed[0]["reason"].startswith("recipient-bounced")
    assert etas(app) == ["ann@exmaple.org"]


def test_bounce_matched_by_failed_recipient_when_no_message_id_comes_back(app: App) -> None:
    ingest(app, raw_mail(frm="Typo <bo@exmaple.org>", subject="Order"))
    deliver(app)
    bounce = dsn("<unknown@elsewhere>", "bo@exmaple.org")
    ingest(app, bounce)
    assert [e["address"] for e in kinds(shown(app, 1), "delivery_failed")] == \
        ["bo@exmaple.org"]


def test_backscatter_bounce_of_mail_we_never_sent_records_no_delivery_failure(app: App
                                                                           ) -> None:
    ingest(app, dsn("<forged@spammer.example>", "victim@elsewhere.example"))
    assert listed(app) == []
    [t] = listed(app, "filtered")
    data = shown(app, t["id"])
    assert data["filtered"]["kind"] == "bounce" and kinds(data, "delivery_failed") == []


def test_agent_mail_to_a_customer_with_support_in_cc_opens_an_answered_ticket(app: App
                                                                            ) -> None:
    ingest(app, raw_mail(frm="Ayşe Yılmaz <ayse@example.com>", to="Carl <carl@example.org>",
                         subject="Your refund", msgid="<a1@example.com>",
                         extra=f"Cc: {SUPPORT}", body="Hi Carl, your refund is on its way."))
    [t] = listed(app)
    assert t["customer"] == "carl@example.org" and t["status"] == "open"
    assert t["agent_replies"] == 1 and etas(app) == []
    assert shown(app, t["id"])["messages"][0]["direction"] == "out"


def test_agent_reply_from_own_address_counts_as_the_first_response(app: App) -> None:
    ingest(app, raw_mail(subject="Order"))
    later(app, 45)
    ingest(app, raw_mail(frm="Ayşe <ayse@example.com>", to="ann@example.org",
                         subject="Re: Order [#1]", msgid="<a2@example.com>",
                         in_reply_to="<m1@example.org>", extra=f"Cc: {SUPPORT}",
                         date="Mon, 02 Nov 2026 10:45:00 +0000"))
    [t] = listed(app)
    assert t["agent_replies"] == 1 and t["first_response_at"] == "2026-11-02T10:45:00Z"
    assert t["status"] == "open" and t["message_count"] == 2
    with app.sessions() as s:
        assert s.get_one(Ticket, 1).first_responder is not None


def test_company_domain_sender_is_the_team_not_a_customer(app: App) -> None:
    ingest(app, raw_mail(frm="Dev <dev@staff.example.net>", subject="FYI: outage tonight",
                         msgid="<n1@staff.example.net>", body="Heads-up for support."))
    assert listed(app) == [] and etas(app) == []
    [t] = listed(app, "filtered")
    assert shown(app, t["id"])["filtered"]["kind"] == "agent"


FORWARD = """Please look at this one.

---------- Forwarded message ---------
From: Dana Fox <dana@example.org>
Date: Mon, 2 Nov 2026 at 09:12
Subject: Broken zipper
To: Ayşe <ayse@example.com>

Hello, the zipper on my jacket broke after a week.
"""


def test_agent_forwarding_a_customer_mail_opens_the_ticket_for_the_original_sender(app: App
                                                                                   ) -> None:
    ingest(app, raw_mail(frm="Ayşe <ayse@example.com>", subject="Fwd: Broken zipper",
                         msgid="<f1@example.com>", body=FORWARD))
    [t] = listed(app)
    assert t["customer"] == "dana@example.org" and t["status"] == "new"
    assert t["subject"] == "Broken zipper"  # the customer's, not the forward's "Fwd: …"
    assert t["sla_due_at"] is not None and t["message_count"] == 1
    data = shown(app, t["id"])
    assert kinds(data, "forwarded")[0]["actor"] == "ayse@example.com"
    assert kinds(data, "auto_reply_suppressed")[0]["reason"] == \
        "loop-guard:forwarded-by-agent"
    assert etas(app) == []


def test_maild_own_mail_in_sent_never_becomes_a_ticket(app: App) -> None:
    digest = compose(sender=SUPPORT, sender_name="maild", to="manager@example.com", to_name="",
                     subject="ACME support 2026-11-01", body="figures", date=NOW,
                     ticket_id=None)
    ingest(app, digest.raw, role="sent")  # a fresh database: its outbox knows nothing
    assert listed(app) == [] and listed(app, "filtered") == []
    ingest(app, raw_mail(subject="Order"))
    eta = compose(sender=SUPPORT, sender_name="Support", to="ann@example.org", to_name="Ann",
                  subject="Re: Order [#1]", body="We answer within 4 h", date=NOW,
                  ticket_id=1, in_reply_to="<m1@example.org>",
                  references=["<m1@example.org>"])
    ingest(app, eta.raw, role="sent")
    [t] = listed(app)
    assert t["agent_replies"] == 0 and t["message_count"] == 1 and t["status"] == "new"
    assert shown(app, 1)["messages"][-1]["auto"] is True


def test_customer_mail_never_joins_a_filtered_ticket(app: App) -> None:
    ingest(app, raw_mail(frm="News <news@shop.example>", subject="Deals", msgid="<n1@shop>",
                         extra="List-Unsubscribe: <mailto:u@shop.example>"))
    ingest(app, raw_mail(subject="Re: Deals", msgid="<c1@example.org>", in_reply_to="<n1@shop>"))
    [t] = listed(app)
    assert t["id"] == 2 and t["status"] == "new" and t["customer"] == "ann@example.org"


def test_recover_makes_a_customer_ticket_and_trusts_the_sender(app: App) -> None:
    orders = dict(frm="Orders <orders@b2b.example>", extra="Precedence: bulk")
    ingest(app, raw_mail(subject="PO 1187", msgid="<po1@b2b>", **orders))
    [t] = listed(app, "filtered")
    later(app, 120)
    auto = app.automation()
    with app.sessions.begin() as s:
        recovered = recover_ticket(s, t["id"], calendar=auto.calendar,
                                   first_response=auto.policies["default"].first_response,
                                   policy="default", warn_fraction=0.8, now=app.clock.now())
        assert recovered.sla_due_at is not None and recovered.sla_due_at > app.clock.now()
        assert s.scalars(select(Customer.trusted).where(
            Customer.address == "orders@b2b.example")).one()
    [now_customer] = listed(app)
    assert now_customer["status"] == "new" and now_customer["message_count"] == 1
    ingest(app, raw_mail(subject="PO 1188", msgid="<po2@b2b>", **orders))
    assert [x["subject"] for x in listed(app)] == ["PO 1188", "PO 1187"]  # newest first
    with app.sessions() as s:
        row = s.scalars(select(MessageRow).where(MessageRow.message_id == "<po2@b2b>")).one()
        assert (row.sender_class, row.class_reason, row.auto) == \
            ("customer", "recovered-sender", False)


def test_migration_filters_an_existing_databases_machine_tickets(db_url: str) -> None:
    from maild.store.db import make_engine

    engine = make_engine(db_url)
    upgrade(engine, "0007")
    receipt = raw_mail(frm="Shop <no-reply@shop.example>", subject="Receipt", msgid="<r1@s>")
    person = raw_mail(msgid="<p1@example.org>")
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO mailboxes (id, address, created_at) VALUES "
                             f"(1, '{SUPPORT}', '2026-11-01 10:00:00')")
        for i, (addr, raw, mid) in enumerate([("no-reply@shop.example", receipt, "<r1@s>"),
                                             ("ann@example.org", person, "<p1@example.org>")],
                                            start=1):
            conn.exec_driver_sql(f"INSERT INTO customers (id, address, name, created_at) VALUES "
                                 f"({i}, '{addr}', '', '2026-11-01 10:00:00')")
            conn.exec_driver_sql(
                "INSERT INTO tickets (id, mailbox_id, customer_id, subject, normalized_subject, "
                "status, priority, tags, sla_breached, next_breached, agent_replies, created_at,"
                f" updated_at, sla_due_at, suggestions) VALUES ({i}, 1, {i}, 's', 's', 'new', "
                "'normal', '[]', false, false, 0, '2026-11-01 10:00:00', '2026-11-01 10:00:00',"
                " '2026-11-01 14:00:00', '[]')")
            conn.exec_driver_sql(
                "INSERT INTO messages (id, ticket_id, mailbox_id, message_id, direction, auto,"
                " from_addr, from_name, to_addrs, cc_addrs, subject, arrived_at, text, html,"
                f" raw_size, attachments, created_at) VALUES ({i}, {i}, 1, '{mid}', 'in', false,"
                f" '{addr}', '', '[]', '[]', 's', '2026-11-01 10:00:00', '', '', 1, '[]',"
                " '2026-11-01 10:00:00')")
            conn.execute(MessageRow.__table__.metadata.tables["message_sources"].insert(),
                         {"message_pk": i, "raw": raw})
    upgrade(engine)
    from maild.store.db import make_sessionmaker
    with make_sessionmaker(engine)() as s:
        receipt_ticket, person_ticket = s.get_one(Ticket, 1), s.get_one(Ticket, 2)
        assert (receipt_ticket.status, receipt_ticket.filtered_kind) == ("filtered",
                                                                         "notification")
        assert receipt_ticket.sla_due_at is None and person_ticket.status == "new"
        row = s.get_one(MessageRow, 1)
        assert (row.auto, row.sender_class, row.machine_kind) == (True, "machine",
                                                                  "notification")
        assert s.scalars(select(Event.kind).where(Event.ticket_id == 1)).all() == ["filtered"]
