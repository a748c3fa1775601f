"""Issue 13 acceptance (reporting): one realistic day of a shared mailbox, with the
mail no human wrote, replayed through real Dovecot and `maild run --once --now T`;
then `maild stats` for that day must equal the values computed by hand below, and
the digest must show the filtered mail and the customer we could not reach.

The day: Tuesday 2026-11-03, Europe/Istanbul (UTC+3 all year), Mon-Fri 09:00-18:00,
first response 4 business hours. [agents]: alice@example.com = "Alice",
bob@example.com = "Bob". All times local.

  T0  Mon 17:00 c0 "Old question", due Tue 12:00 (1h Mon + 3h Tue). Alice answers from
      Sent (the shared address, "Alice (Example Support)") Tue 09:20: FRT business
      1h + 20m = 4800, wall 16h20m = 58800; attained. Stays open (answered).
  08:00  a newsletter (List-Unsubscribe, Precedence: bulk): filtered, bulk.
  T6  09:00 c6 "Wrong size", due 13:00. Bob from Sent 09:40 (FRT 2400), solved by his
      command mail 09:45. 15:00 c6 writes "Thanks!": reopened; Bob solves it 15:10
      without another reply: one agent reply, so OTR.
  T1  09:10 c1 "Order 1001 late", due 13:10. Bob from Sent 10:10 (FRT 3600), solved
      10:15. 10:20 c1's vacation auto-reply (Auto-Submitted: auto-replied) to Bob's
      reply joins T1: machine mail, it must not reopen it. OTR.
  T2  09:30 c2 "Refund for order 2002", due 13:30. Alice writes from her own address to
      c2 with support in Cc at 11:00 (an agent reply, FRT 5400); c2 asks again 12:00;
      Alice again from her address 13:00; solved 13:05: two replies, not OTR.
  T3  10:00 "Ann" from a mistyped address ann@exampel.org, "Cannot log in", due 14:00.
      maild's ETA reply to her bounces at 10:05 (a multipart/report DSN returning the
      reply's headers): a delivery failure. Never answered: an SLA breach; backlog.
  T4  11:30 Bob forwards c4's mail ("---------- Forwarded message ---------") to
      support: c4's ticket, created 11:30, due 15:30. Bob answers c4 from Sent 12:30
      (FRT 3600). Open.
      12:15  a shop receipt from no-reply@: filtered, notification.
  T5  16:00 c5 "Warranty question", due Wed 11:00 (2h Tue + 2h Wed), unanswered.
      16:05 c5's iCloud vacation reply (X-Apple-Action: VACATION) to maild's ETA reply.

Ticket ids are looked up by subject (command mail and machine mail open filtered
tickets of their own, so ids are not predictable across databases).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from devstack.dovecot import ImapAccount
from devstack.smtpsink import SmtpSink
from tests.builders import TRUSTED_MX
from tests.integration.stack import (
    PASSWORD_ENV,
    append,
    cli_json,
    replay_actions,
    run_maild,
    write_config,
)

pytestmark = pytest.mark.integration
IST = ZoneInfo("Europe/Istanbul")
ALICE_SENT, BOB_SENT = "Alice (Example Support)", "Bob (Example Support)"
ALICE, BOB = "alice@example.com", "bob@example.com"
MISTYPED = "ann@exampel.org"
NOW = datetime(2026, 11, 4, 8, 0, tzinfo=IST)  # Wednesday 08:00, the digest's morning


def L(day: int, hour: int, minute: int = 0) -> datetime:
    """Local Istanbul time on November `day` 2026 (2 = Monday, 3 = Tuesday)."""
    return datetime(2026, 11, day, hour, minute, tzinfo=IST)


class Day:
    """Puts the day's mail where maild finds it, one action at a time."""

    def __init__(self, account: ImapAccount, config: Path, sink: SmtpSink) -> None:
        self.account, self.config, self.sink = account, config, sink
        self.support = account.address
        self.first: dict[str, str] = {}  # subject -> the customer's first Message-ID
        self.last_reply: dict[str, str] = {}  # subject -> the last agent reply's Message-ID
        self.customer: dict[str, str] = {}
        self.title: dict[str, str] = {}  # subject -> the ticket's subject, where it differs
        self.n = 0

    def _id(self) -> str:
        self.n += 1
        return f"<d{self.n}@realistic.example>"

    def _put(self, folder: str, at: datetime, headers: list[str], body: str,
             content_type: str = "text/plain; charset=utf-8") -> str:
        msgid = self._id()
        head = [*headers, f"Message-ID: {msgid}", f"Date: {format_datetime(at)}",
                "MIME-Version: 1.0", f"Content-Type: {content_type}"]
        raw = ("\r\n".join(head) + "\r\n\r\n" + body.replace("\n", "\r\n") + "\r\n").encode()
        append(self.account, folder, [(raw, at)])
        return msgid

    def customer_mail(self, at: datetime, address: str, subject: str, body: str = "") -> None:
        """A new ticket, or (for a known subject) the customer writing again."""
        again = subject in self.first
        thread = [f"In-Reply-To: {self.last_reply.get(subject, self.first[subject])}",
                  f"References: {self.first[subject]}"] if again else []
        msgid = self._put("INBOX", at, [
            f"From: Customer {address.split('@')[0]} <{address}>", f"To: {self.support}",
            f"Subject: {'Re: ' if again else ''}{subject}", *thread],
            body or ("Thanks, but when exactly?" if again else
                     "Hello, I need help with this, could you check please?"))
        self.first.setdefault(subject, msgid)
        self.customer[subject] = address

    def sent_reply(self, at: datetime, name: str, subject: str) -> None:
        """An agent's reply from the shared mailbox, as their mail client puts it in Sent."""
        tid = self.ticket_id(subject)
        self.last_reply[subject] = self._put("Sent", at, [
            f"From: {name} <{self.support}>", f"To: {self.customer[subject]}",
            f"Subject: Re: {subject} [#{tid}]", f"In-Reply-To: {self.first[subject]}",
            f"References: {self.first[subject]}"], "Here is the answer.\n\nBest regards")

    def own_address_reply(self, at: datetime, agent: str, name: str, subject: str) -> None:
        """An agent writing from their own address to the customer, support in Cc: the
        copy that reaches the shared INBOX."""
        tid = self.ticket_id(subject)
        self.last_reply[subject] = self._put("INBOX", at, [
            f"From: {name} <{agent}>", f"To: {self.customer[subject]}", f"Cc: {self.support}",
            f"Subject: Re: {subject} [#{tid}]", f"In-Reply-To: {self.first[subject]}",
            f"References: {self.first[subject]}"], "We refunded it today.\n\nAlice")

    def command(self, at: datetime, agent: str, subject: str, line: str) -> None:
        tid = self.ticket_id(subject)
        # the receiving server's pass on top: command mail needs it ([sender_auth])
        self._put("INBOX", at, [f"Authentication-Results: {TRUSTED_MX}; dkim=pass "
                                f"header.d={agent.rpartition('@')[2]}",
                                f"From: {agent.split('@')[0].title()} <{agent}>",
                                f"To: {self.support}", f"Subject: [#{tid}] {line}"], line)

    def forward(self, at: datetime, agent: str, address: str, subject: str) -> None:
        """An agent forwards a customer's mail (inline, Gmail style) to support."""
        msgid = self._put("INBOX", at, [
            f"From: Bob <{agent}>", f"To: {self.support}", f"Subject: Fwd: {subject}"],
            "Could you take this one?\n\n---------- Forwarded message ---------\n"
            f"From: Carl Customer <{address}>\nDate: Tue, 3 Nov 2026 at 08:55\n"
            f"Subject: {subject}\nTo: Bob <{agent}>\n\n"
            "Hello, please send me a copy of invoice 4004. Thanks, Carl")
        self.first[subject], self.customer[subject] = msgid, address
        self.title[subject] = subject  # the ticket takes the customer's subject, not "Fwd: …"

    def vacation(self, at: datetime, subject: str, to_eta: bool = False) -> None:
        """The customer's auto-reply: RFC 3834 to an agent's reply, or iCloud's
        X-Apple-Action to maild's ETA reply."""
        address = self.customer[subject]
        replied = self.eta_message_id(address) if to_eta else self.last_reply[subject]
        marker = "X-Apple-Action: VACATION" if to_eta else "Auto-Submitted: auto-replied"
        self._put("INBOX", at, [
            f"From: Customer {address.split('@')[0]} <{address}>", f"To: {self.support}",
            f"Subject: Auto: Re: {subject}", f"In-Reply-To: {replied}", marker],
            "I am out of the office until 16 November and will reply when I am back.")

    def bounce(self, at: datetime, address: str) -> None:
        """The receiving MTA's DSN for maild's ETA reply to `address` (a typo)."""
        original = self.eta_message_id(address)
        domain = address.rpartition("@")[2]
        boundary = "dsn-boundary-1"
        body = (
            f"--{boundary}\nContent-Type: text/plain; charset=us-ascii\n\n"
            "This is the mail system at host mx.support.example.\n\n"
            "I'm sorry to have to inform you that your message could not\n"
            "be delivered to one or more recipients.\n\n"
            f"<{address}>: Host or domain name not found. Name service error for\n"
            f"    name={domain} type=MX: Host not found\n\n"
            f"--{boundary}\nContent-Type: message/delivery-status\n\n"
            "Reporting-MTA: dns; mx.support.example\n\n"
            f"Final-Recipient: rfc822; {address}\nOriginal-Recipient: rfc822;{address}\n"
            "Action: failed\nStatus: 5.1.2\n"
            f"Diagnostic-Code: X-Postfix; Host or domain name not found. Name service\n"
            f"    error for name={domain} type=MX: Host not found\n\n"
            f"--{boundary}\nContent-Type: text/rfc822-headers\n\n"
            f"From: Example Support <{self.support}>\nTo: {address}\n"
            "Subject: Re: Cannot log in\nAuto-Submitted: auto-replied\n"
            f"Message-ID: {original}\n\n--{boundary}--")
        self._put("INBOX", at, [
            "From: MAILER-DAEMON@mx.support.example (Mail Delivery System)",
            f"To: {self.support}", "Subject: Undelivered Mail Returned to Sender",
            "Auto-Submitted: auto-replied"], body,
            f'multipart/report; report-type=delivery-status; boundary="{boundary}"')

    def newsletter(self, at: datetime) -> None:
        self._put("INBOX", at, [
            "From: Gadget Weekly <news@gadgets.example>", f"To: {self.support}",
            "Subject: This week's deals", "List-Unsubscribe: <https://gadgets.example/u/1>",
            "List-Id: Gadget Weekly <weekly.gadgets.example>", "Precedence: bulk"],
            "Deals of the week: 20% off everything.")

    def receipt(self, at: datetime) -> None:
        self._put("INBOX", at, [
            "From: Paper Shop <no-reply@papershop.example>", f"To: {self.support}",
            "Subject: Your receipt for order 88123"],
            "Thank you for your purchase. Order 88123: 5 x A4 paper, 24.50 EUR.")

    def eta_message_id(self, address: str) -> str:
        """The Message-ID of maild's ETA reply to `address`, as the SMTP sink got it."""
        found = [m.parsed()["Message-ID"] for m in self.sink.messages
                 if address in m.rcpt_tos and m.parsed()["Auto-Submitted"] == "auto-replied"]
        assert found, f"no ETA reply to {address} was sent"
        return str(found[0])

    def ticket_id(self, subject: str) -> int:
        rows = cli_json(self.config, self.account, "tickets", "list")
        found = [t["id"] for t in rows if t["subject"] == self.title.get(subject, subject)]
        assert len(found) == 1, f"no ticket for {subject!r} (its mail quarantined?)"
        return int(found[0])


Action = Callable[[Day], None]
# per_agent's satisfaction figures when nobody answered a survey (docs/metrics.md)
NO_SURVEY_ANSWERS = {"csat": {"satisfied_pct": None, "responses": 0}, "nps": None}
OLD, SIZE, ORDER, REFUND = ("Old question", "Wrong size", "Order 1001 late",
                            "Refund for order 2002")
LOGIN, INVOICE, WARRANTY = "Cannot log in", "Invoice copy needed", "Warranty question"
FORWARDED = INVOICE  # the subject of the ticket the forward opened (no "Fwd:")


def actions() -> list[tuple[datetime, Action]]:
    c = "{}@example.org".format
    plan: list[tuple[datetime, Action]] = [
        (L(2, 17), lambda d: d.customer_mail(L(2, 17), c("c0"), OLD)),
        (L(3, 8), lambda d: d.newsletter(L(3, 8))),
        (L(3, 9), lambda d: d.customer_mail(L(3, 9), c("c6"), SIZE)),
        (L(3, 9, 10), lambda d: d.customer_mail(L(3, 9, 10), c("c1"), ORDER)),
        (L(3, 9, 20), lambda d: d.sent_reply(L(3, 9, 20), ALICE_SENT, OLD)),
        (L(3, 9, 30), lambda d: d.customer_mail(L(3, 9, 30), c("c2"), REFUND)),
        (L(3, 9, 40), lambda d: d.sent_reply(L(3, 9, 40), BOB_SENT, SIZE)),
        (L(3, 9, 45), lambda d: d.command(L(3, 9, 45), BOB, SIZE, "#status solved")),
        (L(3, 10), lambda d: d.customer_mail(L(3, 10), MISTYPED, LOGIN)),
        (L(3, 10, 5), lambda d: d.bounce(L(3, 10, 5), MISTYPED)),
        (L(3, 10, 10), lambda d: d.sent_reply(L(3, 10, 10), BOB_SENT, ORDER)),
        (L(3, 10, 15), lambda d: d.command(L(3, 10, 15), BOB, ORDER, "#status solved")),
        (L(3, 10, 20), lambda d: d.vacation(L(3, 10, 20), ORDER)),
        (L(3, 11), lambda d: d.own_address_reply(L(3, 11), ALICE, "Alice", REFUND)),
        (L(3, 11, 30), lambda d: d.forward(L(3, 11, 30), BOB, c("c4"), INVOICE)),
        (L(3, 12), lambda d: d.customer_mail(L(3, 12), c("c2"), REFUND)),
        (L(3, 12, 15), lambda d: d.receipt(L(3, 12, 15))),
        (L(3, 12, 30), lambda d: d.sent_reply(L(3, 12, 30), BOB_SENT, INVOICE)),
        (L(3, 13), lambda d: d.own_address_reply(L(3, 13), ALICE, "Alice", REFUND)),
        (L(3, 13, 5), lambda d: d.command(L(3, 13, 5), ALICE, REFUND, "#status solved")),
        (L(3, 15), lambda d: d.customer_mail(L(3, 15), c("c6"), SIZE, "Thanks!")),
        (L(3, 15, 10), lambda d: d.command(L(3, 15, 10), BOB, SIZE, "#status solved")),
        (L(3, 16), lambda d: d.customer_mail(L(3, 16), c("c5"), WARRANTY)),
        (L(3, 16, 5), lambda d: d.vacation(L(3, 16, 5), WARRANTY, to_eta=True)),
    ]
    return plan


def ticks() -> list[datetime]:
    """The clock of each `run --once`: every action's time plus every hour."""
    grid = [L(2, 16) + timedelta(hours=i) for i in range(41)]  # Mon 16:00 .. Wed 08:00
    return sorted({*[at for at, _ in actions()], *grid, NOW})


def replay(account: ImapAccount, config: Path, sink: SmtpSink) -> Day:
    day = Day(account, config, sink)
    replay_actions(config, account, ticks(), actions(), day)
    return day


def configure(imap_account: ImapAccount, db_url: str, smtp_sink: SmtpSink,
              tmp_path: Path) -> Path:
    config = write_config(tmp_path, imap_account, db_url, smtp_sink, extra=(
        f'[agents]\n"{ALICE}" = "Alice"\n"{BOB}" = "Bob"\n'
        f'[sender_auth]\ntrusted_authserv_id = "{TRUSTED_MX}"\n'))
    run_maild(config, imap_account, "db", "upgrade")
    return config


def digest_text(config: Path, account: ImapAccount) -> str:
    """`maild digest --date 2026-11-03 --preview --now NOW`, in-process."""
    from maild.cli import main

    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
        mp.setenv(PASSWORD_ENV, account.password)
        code = main(["--config", str(config), "digest", "--date", "2026-11-03", "--preview",
                     "--now", NOW.astimezone(UTC).isoformat()])
    assert code == 0
    return out.getvalue()


def test_realistic_day(imap_account: ImapAccount, db_url: str, smtp_sink: SmtpSink,
                       tmp_path: Path) -> None:
    config = configure(imap_account, db_url, smtp_sink, tmp_path)
    replay(imap_account, config, smtp_sink)
    ids = {t["subject"]: t["id"] for t in cli_json(config, imap_account, "tickets", "list")}
    check_tickets(config, imap_account, ids)
    stats = cli_json(config, imap_account, "stats", "--since", "2026-11-03",
                     "--until", "2026-11-04", "--now", NOW.astimezone(UTC).isoformat())
    check_stats(stats, imap_account.address)
    check_digest(digest_text(config, imap_account), ids)


def check_tickets(config: Path, account: ImapAccount, ids: dict[str, int]) -> None:
    """What maild made of the day's mail, before the figures."""
    assert sorted(ids) == sorted([OLD, SIZE, ORDER, REFUND, LOGIN, FORWARDED, WARRANTY])

    def show(subject: str) -> dict[str, Any]:
        return dict(cli_json(config, account, "tickets", "show", str(ids[subject])))

    order = show(ORDER)  # the vacation reply joined T1 as machine mail and did not reopen it
    assert order["status"] == "solved" and order["message_count"] == 2
    assert [(m["kind"], m["auto"]) for m in order["messages"] if m["direction"] == "in"
            and m["class"] == "machine"] == [("auto-reply", True)]
    assert "reopened" not in [e["kind"] for e in order["events"]]
    login = show(LOGIN)
    [failed] = [e for e in login["events"] if e["kind"] == "delivery_failed"]
    assert (failed["address"], failed["status"]) == (MISTYPED, "5.1.2")
    invoice = show(FORWARDED)
    assert invoice["customer"] == "c4@example.org"
    assert invoice["created_at"] == "2026-11-03T08:30:00Z"
    refund = show(REFUND)
    assert refund["agent_replies"] == 2 and [
        m["from"] for m in refund["messages"] if m["direction"] == "out" and not m["auto"]
    ] == [ALICE, ALICE]
    filtered = cli_json(config, account, "tickets", "list", "--status", "filtered")
    kinds = sorted(t["subject"] for t in filtered if not t["subject"].startswith("[#"))
    assert kinds == ["This week's deals", "Your receipt for order 88123"], kinds


def check_stats(stats: dict[str, Any], support: str) -> None:
    assert stats["since"] == "2026-11-02T21:00:00Z" and stats["until"] == "2026-11-03T21:00:00Z"
    # created on Tuesday: T6 T1 T2 T3 T4 T5 (T0 is Monday's; machine mail, command mail
    # and the forward's agent open no other counted ticket)
    assert stats["tickets_created"] == 6
    # first replies on Tuesday: T0 09:20, T6 09:40, T1 10:10, T2 11:00 (Alice's own
    # address), T4 12:30
    assert stats["first_responses"] == 5
    # business: T6 2400, T1 3600, T4 3600, T0 4800 (1h Mon + 20m Tue), T2 5400
    # median 3600; p90 at h = 4 * 0.9 = 3.6: 4800 + 0.6 * 600 = 5160; mean 19800 / 5
    assert stats["frt_business_seconds"] == {"median": 3600.0, "p90": 5160.0,
                                             "mean": 3960.0}
    # wall: T6 2400, T1 3600, T4 3600, T2 5400, T0 58800 (Mon 17:00 -> Tue 09:20)
    # p90: 5400 + 0.6 * 53400 = 37440; mean 73800 / 5
    assert stats["frt_wall_seconds"] == {"median": 3600.0, "p90": 37440.0, "mean": 14760.0}
    # all five first replies before their due times; the one breach is T3 (due 14:00,
    # never answered; its ETA reply bounced). T5 is due Wednesday.
    assert stats["sla"] == {"attained_pct": 1.0, "breaches": 1}
    # solved on Tuesday and at its end: T6 (one reply; reopened by "Thanks!" and solved
    # again without a reply), T1 (one reply; the vacation reply did not reopen it),
    # T2 (two replies): OTR 2/3
    assert stats["otr_rate"] == 2 / 3
    assert stats["resolution_rate"] == 3 / 6  # of the 6 created: T6 T1 T2
    assert stats["reopened"] == 1  # T6 only: not T1's vacation reply
    # backlog at Wed 00:00: T0 (31h, answered), T3 (14h), T4 (12h30, answered), T5 (8h)
    assert stats["backlog"] == {"total": 4, "age_buckets": {
        "<4h": 0, "4-24h": 3, "1-3d": 1, "3-7d": 0, ">7d": 0}}
    # waiting: T3 since 10:00 (14h), T5 since 16:00 (its vacation reply is no message of
    # the customer's). T4's only customer message (the forward, 11:30) was answered.
    assert stats["longest_wait_seconds"] == 14 * 3600
    # keyed by the reply's From address. Alice's own address: T2 x2, first response T2
    # 5400. The shared mailbox (Sent): Alice on T0, Bob on T6 T1 T4 = 4 replies, all
    # first responses: 2400 3600 3600 4800 -> median 3600. Bob's forward is the
    # customer's mail and his command mails are no replies.
    assert stats["per_agent"] == [
        {"agent": ALICE, "name": "Alice", "replies": 2, "first_responses": 1,
         "frt_business_median": 5400.0, **NO_SURVEY_ANSWERS},
        {"agent": support, "name": f"{ALICE_SENT}, {BOB_SENT}", "replies": 4,
         "first_responses": 4, "frt_business_median": 3600.0, **NO_SURVEY_ANSWERS}]
    assert stats["per_mailbox"] == [{
        "mailbox": support, "tickets_created": 6, "first_responses": 5,
        "frt_business_median": 3600.0, "sla_attained_pct": 1.0,
        "sla_breaches": 1, "backlog": 4}]  # one mailbox: the overall figures above
    # machine mail that arrived on Tuesday: the newsletter (bulk), the DSN (bounce), c1's
    # and c5's vacation replies (auto-reply), the receipt (notification)
    assert stats["filtered"] == {"total": 5, "by_kind": {
        "bounce": 1, "auto-reply": 2, "bulk": 1, "notification": 1, "report": 0}}
    assert stats["delivery_failures"] == 1  # the ETA reply to ann@exampel.org


def check_digest(text: str, ids: dict[str, int]) -> None:
    lines = text.splitlines()
    assert ("- Filtered (machine mail, not counted): 5 — 2 auto-reply, 1 bounce, 1 bulk, "
            "1 notification") in lines
    assert "CUSTOMERS WE COULD NOT REACH (1)" in lines
    [row] = [ln for ln in lines if ln.startswith(f"  #{ids[LOGIN]}  <{MISTYPED}>")]
    assert "5.1.2" in row and "Host or domain name not found" in row
    assert "- Tickets created: 6" in text and "- Reopened: 1" in lines
    assert "- SLA breaches: 1" in text
    assert f"  Alice <{ALICE}>: 2 replies, 1 first responses, FRT median 1h 30m" in lines
