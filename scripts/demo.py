"""The maild demo: a local mail stack, a day of support mail, maild at work.

Starts a private Dovecot and an SMTP sink (devstack), creates the shared
mailbox support@example.com, feeds it realistic customer mail (English and
Turkish, replies, an attachment, a broken message) plus machine mail (an
out-of-office, a bounce, a mailing list, a noreply sender) and agent replies
in Sent, runs `maild db upgrade` and `maild run --once`, then shows the
tickets, the ETA auto-replies that went out, those suppressed and why, the
macro suggestions and SLA status, then bounces one ETA reply (a mistyped
address) and shows the delivery failure on its ticket, then has an agent solve a
ticket: the CSAT survey goes out after the reply, the customer clicks "5" and maild
records the answer (no reply to it), and writes a digest preview as HTML.
Everything lives in a temp dir (or --out) and is torn down at the end. Run it with scripts/demo.sh.
"""

from __future__ import annotations

import argparse
import contextlib
import email.policy
import email.utils
import io
import json
import os
import re
import sys
import tempfile
import tomllib
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import unquote
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from devstack.dovecot import DovecotServer, make_workdir  # noqa: E402
from devstack.maildconfig import maild_config_text  # noqa: E402
from devstack.smtpsink import ReceivedMessage, SmtpSink  # noqa: E402
from maild.cli import main as maild  # noqa: E402
from tests.corpus.loader import load_corpus  # noqa: E402

SUPPORT = "support@example.com"
SURVEY_TICKET = "3"  # Sophie's jacket exchange, answered: the agent solves it
SURVEY_COMMENT = "Quick and friendly, thank you!"
MACHINES = [
    ("Bob Stone <bob@corp.example>", "Automatic reply: Invoice question",
     "Auto-Submitted: auto-generated\r\nX-Auto-Response-Suppress: All\r\n",
     "I am out of the office until Monday.", "text/plain; charset=utf-8"),
    ("Mail Delivery System <MAILER-DAEMON@mx.example>", "Undelivered Mail Returned to Sender",
     "Return-Path: <>\r\n", "--b\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n--b\r\n"
     "Content-Type: message/delivery-status\r\n\r\nStatus: 5.1.1\r\n--b--",
     "multipart/report; report-type=delivery-status; boundary=b"),
    ("Product News <news@lists.example>", "This week in product news",
     "List-Id: <news.lists.example>\r\nList-Unsubscribe: <mailto:leave@lists.example>\r\n",
     "Our weekly digest.", "text/plain; charset=utf-8"),
    ("Shop <no-reply@shop.example>", "Your receipt #88121", "", "Thanks for your order.",
     "text/plain; charset=utf-8"),
]


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def machine_mail(i: int, frm: str, subject: str, headers: str, body: str, ctype: str) -> bytes:
    return (f"From: {frm}\r\nTo: {SUPPORT}\r\nSubject: {subject}\r\nMessage-ID: "
            f"<machine-{i}@demo.example>\r\nDate: Fri, 13 Nov 2026 09:00:00 +0300\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: {ctype}\r\n{headers}\r\n{body}\r\n").encode()


def write_config(out: Path, dovecot: DovecotServer, sink: SmtpSink) -> Path:
    cfg = out / "maild.toml"
    cfg.write_text(maild_config_text(
        address=SUPPORT, imap_port=dovecot.imap_port, ca_file=dovecot.ca_file,
        db_url=f"sqlite:///{out / 'maild.db'}", password_env="MAILD_DEMO_PASSWORD",
        smtp_port=sink.port,
        # The demo replays a past week; the default (24 h) skips mail that old.
        autoreply_extra="max_age_hours = 1000\n"))
    return cfg


def cli(cfg: Path, *args: str) -> Any:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = maild(["--config", str(cfg), "--log-level", "WARNING", *args])
    if code != 0:
        raise SystemExit(f"maild {' '.join(args)} failed with exit code {code}")
    text = buf.getvalue()
    return json.loads(text) if "--json" in args else text


def feed(dovecot: DovecotServer) -> int:
    import imapclient

    corpus = load_corpus("threading")
    client = imapclient.IMAPClient(dovecot.host, port=dovecot.imap_port, ssl=False)
    client.starttls(__import__("ssl").create_default_context(cafile=str(dovecot.ca_file)))
    client.login(SUPPORT, "demo")
    count = 0
    for folder in ("INBOX", "Sent"):
        for m in corpus.folder(folder):
            client.append(folder, m.raw, (), m.internaldate)
            count += 1
    for i, spec in enumerate(MACHINES):
        client.append("INBOX", machine_mail(i, *spec), (), None)
        count += 1
    client.logout()
    return count


def show(cfg: Path, sink: SmtpSink) -> None:
    step("tickets (maild tickets list)")
    print(cli(cfg, "tickets", "list"), end="")
    tickets = cli(cfg, "tickets", "list", "--json")
    step(f"ETA auto-replies that went out ({len(sink.messages)}, recorded by the SMTP sink)")
    for m in sink.messages:
        msg = m.parsed()
        body = msg.get_body(("plain",))
        eta = [ln for ln in (body.get_content() if body else "").splitlines()
               if "business" in ln or "iş " in ln]
        print(f"  to {m.rcpt_tos[0]:<36} {msg['Subject']}")
        if eta:
            print(f"      {eta[0].strip()}")
    step("machine mail: filtered, outside the backlog, SLA and KPIs "
         "(maild tickets list --status filtered)")
    filtered = cli(cfg, "tickets", "list", "--status", "filtered", "--json")
    for t in sorted(filtered, key=lambda t: t["id"]):  # in arrival order (the list: newest first)
        shown = cli(cfg, "tickets", "show", str(t["id"]), "--json")
        print(f"  #{t['id']:<3} {shown['filtered']['kind']:<13} {t['customer']:<34} "
              f"{t['subject'][:40]}")
    step("auto-replies suppressed, with the reason recorded on the ticket")
    for t in tickets + filtered:
        shown = cli(cfg, "tickets", "show", str(t["id"]), "--json")
        for e in shown["events"]:
            if e["kind"] == "auto_reply_suppressed":
                print(f"  #{t['id']:<3} {t['customer']:<36} {e['reason']}")
    step("macro suggestions and SLA status for the open tickets")
    for t in tickets:
        if t["status"] in ("solved", "filtered"):
            continue
        shown = cli(cfg, "tickets", "show", str(t["id"]), "--json")
        sugg = ", ".join(f"{s['name']} ({s['score'] if s['score'] is not None else 'rule'})"
                         for s in shown.get("suggestions", [])) or "-"
        answered = f"answered {t['first_response_at']}" if t["first_response_at"] else \
            f"due {t['sla_due_at'] or '-'}"
        print(f"  #{t['id']:<3} [{t['priority']:<6}] {answered:<34} suggest: {sugg}")


def dsn(to: str, message_id: str, subject: str) -> bytes:
    """The bounce a receiving server sends when `to` does not exist (RFC 3464)."""
    parts = [
        "From: Mail Delivery System <MAILER-DAEMON@mx.example>", f"To: {SUPPORT}",
        "Subject: Undelivered Mail Returned to Sender", "Auto-Submitted: auto-replied",
        "Message-ID: <dsn-demo@mx.example>", "Date: Fri, 13 Nov 2026 07:04:00 +0000",
        "MIME-Version: 1.0",
        "Content-Type: multipart/report; report-type=delivery-status; boundary=b", "",
        "--b", "Content-Type: text/plain", "", f"<{to}>: user unknown", "",
        "--b", "Content-Type: message/delivery-status", "", "Reporting-MTA: dns; mx.example", "",
        f"Final-Recipient: rfc822; {to}", "Action: failed", "Status: 5.1.1",
        f"Diagnostic-Code: smtp; 550 5.1.1 <{to}>: Recipient address rejected: User unknown",
        "", "--b", "Content-Type: text/rfc822-headers", "", f"From: {SUPPORT}", f"To: {to}",
        f"Subject: {subject}", f"Message-ID: {message_id}", "", "--b--", ""]
    return "\r\n".join(parts).encode()


def append_to_inbox(dovecot: DovecotServer, raw: bytes) -> None:
    """Mail arriving in the support INBOX (appended over IMAP, as `feed` does)."""
    import imapclient

    client = imapclient.IMAPClient(dovecot.host, port=dovecot.imap_port, ssl=False)
    client.starttls(__import__("ssl").create_default_context(cafile=str(dovecot.ca_file)))
    client.login(SUPPORT, "demo")
    client.append("INBOX", raw, (), None)
    client.logout()


def bounce_last_reply(cfg: Path, dovecot: DovecotServer, sink: SmtpSink) -> None:
    """The last ETA reply bounces (a mistyped address): maild puts that on its ticket."""
    reply = sink.messages[-1].parsed()
    to, ticket = sink.messages[-1].rcpt_tos[0], reply["Subject"].rsplit("[#", 1)[1].rstrip("]")
    append_to_inbox(dovecot, dsn(to, reply["Message-ID"], reply["Subject"]))
    cli(cfg, "run", "--once", "--json", "--now", "2026-11-13T07:05:00Z")
    shown = cli(cfg, "tickets", "show", ticket, "--json")
    for e in shown["events"]:
        if e["kind"] == "delivery_failed":
            print(f"  #{ticket} delivery_failed {e['address']} {e['status']}: "
                  f"{e['diagnostic'][:60]}")
    print(f"  #{ticket} is still {shown['status']}; the bounce is on it as "
          f"{shown['messages'][-1]['kind']} mail, not a new ticket "
          f"({len(cli(cfg, 'tickets', 'list', '--json'))} tickets listed)")


def answer_mail(customer: str, name: str, subject: str) -> bytes:
    """What the customer's mail client sends when they click a survey link, plus a comment."""
    msg = EmailMessage()
    msg["From"] = email.utils.formataddr((name, customer))
    msg["To"], msg["Subject"] = SUPPORT, subject
    msg["Message-ID"], msg["Date"] = "<csat-answer@demo.example>", email.utils.formatdate()
    msg.set_content(f"{SURVEY_COMMENT}\n")
    return msg.as_bytes(policy=email.policy.SMTP)


def survey_links(sink: SmtpSink, since: int) -> tuple[ReceivedMessage, dict[str, str]]:
    """The survey mail among the sink's messages from index `since`, and its links by
    the subject they open (`Survey [#3] csat=5 key=...`)."""
    for m in sink.messages[since:]:
        body = m.parsed().get_body(("plain",))
        urls = re.findall(r"mailto:\S+", body.get_content() if body else "")
        links = {unquote(u.split("?subject=", 1)[1]): u for u in urls if "?subject=" in u}
        if any("csat=5" in subject.split() for subject in links):
            return m, links
    raise SystemExit("no survey mail reached the SMTP sink")


def survey_round_trip(cfg: Path, out: Path, dovecot: DovecotServer, sink: SmtpSink) -> None:
    """An agent solves a ticket, the survey goes out after the reply, the customer clicks
    "5" and maild records it. On the real clock: `maild reply` queues at the current time."""
    tid = SURVEY_TICKET
    ticket = cli(cfg, "tickets", "show", tid, "--json")
    before = len(sink.messages)
    cli(cfg, "reply", tid, "--macro", "resolved", "--send")
    reply_run = cli(cfg, "run", "--once", "--json")  # the reply goes out (and into Sent)
    survey_run = cli(cfg, "run", "--once", "--json")  # its Sent copy is read: the survey
    survey, links = survey_links(sink, before)
    [five] = [subject for subject in links if "csat=5" in subject.split()]
    name = ticket["messages"][0]["from_name"] or ""
    append_to_inbox(dovecot, answer_mail(ticket["customer"], name, five))
    at_sink = len(sink.messages)
    answer_run = cli(cfg, "run", "--once", "--json")
    shown = cli(cfg, "tickets", "show", tid, "--json")
    [csat] = [e for e in shown["events"] if e["kind"] == "csat"]
    zone = ZoneInfo(tomllib.loads(cfg.read_text())["sla"]["timezone"])
    day = datetime.fromisoformat(csat["at"].replace("Z", "+00:00")).astimezone(zone).date()
    stats = cli(cfg, "stats", "--since", str(day), "--until", str(day + timedelta(days=1)),
                "--json")
    cli(cfg, "digest", "--date", str(day), "--preview", "--out", str(out / "digest"))
    digest = (out / "digest" / f"digest-{day}.txt").read_text()
    step(f"satisfaction survey: sent to {survey.rcpt_tos[0]}, answered csat={csat['score']} "
         f"(maild reply {tid} --macro resolved --send)")
    print(f"  #{tid} solved; maild run --once sent the reply ({reply_run['sent']} sent), the next "
          f"run read its Sent copy and sent the survey ({survey_run['sent']} sent)")
    print(f"  survey at the SMTP sink: \"{survey.parsed()['Subject']}\" to {survey.rcpt_tos[0]}, "
          f"{sum('csat=' in s for s in links)} mailto: links (csat=1..5, opt-out)")
    print(f"  the customer clicks \"5\" and adds a line: a mail to {SUPPORT}, "
          f"subject \"{five[:36]}…\"")
    print(f"  maild run --once: stored {answer_run['stored']}, sent {answer_run['sent']} "
          f"({at_sink} mails at the sink before, {len(sink.messages)} after: no reply to it)")
    print(f"  maild tickets show {tid}: csat score {csat['score']}, "
          f"comment \"{csat['comment']}\"; still {shown['status']}")
    print(f"  maild stats --json: \"csat\": {json.dumps(stats['csat'])}")
    print(f"  maild digest --date {day}: " + next(
        ln.strip("- ").strip() for ln in digest.splitlines() if "Satisfaction (CSAT)" in ln))


def run(out: Path) -> None:
    step("starting a private Dovecot (IMAP + LMTP) and an SMTP sink on 127.0.0.1")
    work = make_workdir("maild-demo-")
    with DovecotServer(work) as dovecot, SmtpSink(deliver_to=dovecot) as sink:
        dovecot.add_user(SUPPORT, "demo")
        os.environ["MAILD_DEMO_PASSWORD"] = "demo"
        print(f"    IMAP 127.0.0.1:{dovecot.imap_port} (STARTTLS), SMTP 127.0.0.1:{sink.port}")
        step("feeding the shared mailbox: customer mail, agent replies in Sent, machine mail")
        print(f"    {feed(dovecot)} messages appended")
        cfg = write_config(out, dovecot, sink)
        step(f"maild db upgrade  (config: {cfg})")
        print("    " + cli(cfg, "db", "upgrade").strip())
        step("maild run --once  (fetch, thread, rules, ETA auto-replies, send)")
        result = cli(cfg, "run", "--once", "--json", "--now", "2026-11-13T07:00:00Z")
        print(f"    stored {result['stored']} messages into {result['new_tickets']} tickets; "
              f"sent {result['sent']} auto-replies")
        show(cfg, sink)
        step("a customer's address bounces: maild records it on the ticket (maild tickets show)")
        bounce_last_reply(cfg, dovecot, sink)
        survey_round_trip(cfg, out, dovecot, sink)
        step("the managers' daily digest for Tuesday 3 November (maild digest --preview)")
        print("    " + cli(cfg, "digest", "--date", "2026-11-03", "--preview", "--out",
                           str(out / "digest"), "--now", "2026-11-04T06:00:00Z").strip())
        print("    open the .html file in a browser; scripts/screenshot.sh renders it to PNG")
    step(f"done. The database and config are in {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="directory for the demo database and config")
    args = parser.parse_args()
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="maild-demo-out-"))
    out.mkdir(parents=True, exist_ok=True)
    run(out.resolve())


if __name__ == "__main__":
    main()
