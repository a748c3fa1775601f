"""Issue 6: a kill soak. 500 mails with auto-replies, maild SIGKILLed at random
points 20 times, then finished cleanly: every message is in exactly one ticket
and every due auto-reply went out exactly once (deduplicated by Message-ID).

The input is generated from a seed (printed; replay with MAILD_SOAK_SEED=N):
new conversations from distinct customers (each due one ETA auto-reply; the
rate limits are opened wide so none is suppressed), follow-ups in existing
threads and machine mail (auto-submitted, bulk, lists), which are due nothing.
What is due is computed here from the input, never read back from maild.
The seed fixes the input and the kill plan; where exactly a kill lands (and so
the number of raw duplicates) still depends on timing.

Each kill runs either the daemon (`maild run`) or `maild run --once`, with
IMAP batches of 20, in a child process and SIGKILLs it when a seeded trigger
fires: k more messages in the database (plus a random delay, so most kills land
inside a batch's transaction), the SMTP sink has accepted k more mails (killed
at once: between the server's 250 and the outbox's mark), or a random delay.
The children are forked from one process that imported maild once (`ZYGOTE`)
and each runs the real CLI `main([...])`: a fresh interpreter costs ~2 s of
imports per kill. A final `run --once` at now + 11 minutes (the outbox requeues
a claim older than 10 minutes) finishes the work; a second one must send
nothing. A stale claim is sent again with the SAME Message-ID and identical
bytes: the documented at-least-once edge, counted and printed as raw
duplicates, never a failure. A second, DIFFERENT Message-ID answering one
customer mail is a failure, as is any reply to a follow-up or a machine.

Runtime is bound by maild's own throughput (~40 ms to store a message with its
rules and auto-reply, ~30-60 ms to send and mark one), not by the kills: about
35-50 s on SQLite and 45-65 s on PostgreSQL on 2 shared cores. PostgreSQL
therefore runs 12 kills instead of 20 (it is the slower backend per message).
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import email.utils
import json
import os
import random
import select
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from devstack.dovecot import ImapAccount
from devstack.maildconfig import maild_config_text
from devstack.smtpsink import SmtpSink
from maild.clock import FixedClock
from maild.compose import compose
from maild.locks import lock_key
from maild.outbox import SENT_COPY_CHUNK, OutboxSender, enqueue
from maild.store import repo
from tests.builders import migrated_sessions
from tests.integration.stack import (
    PASSWORD_ENV,
    REPO,
    append,
    env_for,
    folder_messages,
    run_maild,
)

pytestmark = pytest.mark.integration

DEFAULT_SEED = 20261102
TOTAL = 500
KILLS = {"sqlite": 20, "postgresql": 12}
BATCH = 20
AUTORELAX = "per_sender_hours = 1\nglobal_per_hour = 100000\nper_domain_per_hour = 0\n"

MACHINE_HEADERS = (
    "Auto-Submitted: auto-generated\r\n",
    "Auto-Submitted: auto-replied\r\nX-Auto-Response-Suppress: All\r\n",
    "Precedence: bulk\r\n",
    "List-Id: <news.lists.example>\r\nList-Unsubscribe: <mailto:u@lists.example>\r\n",
    "X-Auto-Response-Suppress: OOF, AutoReply\r\n",
)
TOPICS = ("my order has not arrived", "the invoice shows the wrong amount",
          "how do I change my delivery address", "the app shows a blank page",
          "can I add a second user to my account", "the parcel arrived damaged")


@dataclass
class Corpus:
    raws: list[bytes] = field(default_factory=list)
    new: list[str] = field(default_factory=list)  # due exactly one ETA auto-reply each
    machines: list[str] = field(default_factory=list)  # a ticket each, no reply
    followups: dict[str, str] = field(default_factory=dict)  # follow-up -> thread root
    customer: dict[str, str] = field(default_factory=dict)  # new -> the sender's address


def _mail(frm: str, subject: str, msgid: str, body: str, extra: str = "") -> bytes:
    return (f"From: {frm}\r\nTo: support@example.com\r\nSubject: {subject}\r\n"
            f"Message-ID: {msgid}\r\nDate: {email.utils.formatdate()}\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n{extra}\r\n{body}\r\n").encode()


def make_corpus(rng: random.Random, total: int, tag: str = "") -> Corpus:
    c = Corpus()
    subjects: dict[str, tuple[str, str]] = {}
    for i in range(total):
        roll = rng.random()
        if c.new and roll < 0.12:  # a customer writes again in an existing thread
            root = rng.choice(c.new)
            frm, subject = subjects[root]
            mid = f"<soak{tag}-f{i}@example.org>"
            extra = f"In-Reply-To: {root}\r\nReferences: {root}\r\n"
            c.raws.append(_mail(frm, f"Re: {subject}", mid, "Any news on this, please?", extra))
            c.followups[mid] = root
        elif roll > 0.97:  # a machine: it gets a ticket but never a reply
            mid = f"<soak{tag}-m{i}@lists.example>"
            c.raws.append(_mail(f"Robot {i} <robot{i}@lists.example>", f"Notification {i}",
                                mid, "This is an automatic notification.",
                                rng.choice(MACHINE_HEADERS)))
            c.machines.append(mid)
        else:
            mid = f"<soak{tag}-n{i}@example.org>"
            frm = f"Customer {i} <customer{tag}{i}@example.org>"
            subject = f"Question {i}: {rng.choice(TOPICS)}"
            subjects[mid] = (frm, subject)
            c.customer[mid] = f"customer{tag}{i}@example.org"
            c.raws.append(_mail(frm, subject, mid, f"Hello, {subject.split(': ')[1]}. "
                                "Could you help me with this? Thanks, customer."))
            c.new.append(mid)
    return c


class Db:
    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(url)

    def scalar(self, sql: str) -> int:
        try:
            with self.engine.connect() as conn:
                return int(conn.exec_driver_sql(sql).scalar() or 0)
        except sa.exc.SQLAlchemyError:
            return 0

    def wait_lock_free(self, address: str, timeout: float = 15.0) -> None:
        """PostgreSQL: until the killed child's backend is gone with its mailbox lock."""
        if self.engine.dialect.name != "postgresql":
            return
        key = lock_key(address)
        deadline = time.monotonic() + timeout
        with self.engine.connect() as conn:
            while time.monotonic() < deadline:
                if conn.exec_driver_sql(f"SELECT pg_try_advisory_lock({key})").scalar():
                    conn.exec_driver_sql(f"SELECT pg_advisory_unlock({key})")
                    return
                time.sleep(0.05)

    def rows(self, sql: str) -> list[tuple[object, ...]]:
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql(sql).all()]


# Imports maild once, then forks one child per run: a SIGKILL lands in a real
# process running the real CLI (`main([...])`), without paying ~2 s of imports
# for each of the kills. Protocol: a JSON argv per line in; "pid" then the
# child's exit code (negative: killed by that signal) per line out.
ZYGOTE = r"""
import json, os, sys
import maild.actions, maild.app, maild.cli, maild.daemon, maild.schedule, maild.outbox
import maild.language
maild.language.detect_language("warm the language profiles up once", "en")
for line in sys.stdin:
    argv = json.loads(line)
    pid = os.fork()
    if pid == 0:
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        try:
            code = maild.cli.main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            code = 70
        os._exit(code)
    print(pid, flush=True)
    print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
"""


class Zygote:
    def __init__(self, config: Path, account: ImapAccount) -> None:
        self.config = config
        self.child: int | None = None
        self.proc = subprocess.Popen([sys.executable, "-c", ZYGOTE], env=env_for(account),
                                     cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)

    def start(self, *args: str) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(["--config", str(self.config), *args]) + "\n")
        self.proc.stdin.flush()
        self.child = int(self.proc.stdout.readline())
        return self.child

    def exited(self, timeout: float = 0.0) -> bool:
        assert self.proc.stdout is not None
        return bool(select.select([self.proc.stdout], [], [], timeout)[0])

    def kill(self) -> None:
        if self.child is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.child, signal.SIGKILL)

    def result(self) -> int:
        assert self.proc.stdout is not None
        code = int(self.proc.stdout.readline())
        self.child = None
        return code

    def run(self, *args: str, timeout: float = 300.0) -> None:
        self.start(*args)
        if not self.exited(timeout):
            self.kill()
        code = self.result()
        assert code == 0, f"maild {' '.join(args)} exited {code}"

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.kill()
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass
class Kill:
    mode: str  # run | once
    trigger: str  # stored | sent | delay
    amount: float
    jitter: float = 0.0  # seconds from the trigger to the kill
    seconds: float = 0.0
    stored_at_kill: int = 0
    sent_at_kill: int = 0
    exited_first: bool = False


def _kill_one(zygote: Zygote, kill: Kill, db: Db, sink: SmtpSink,
              timeout: float = 30.0) -> None:
    base_stored = db.scalar("SELECT count(*) FROM messages")
    base_sent = len(sink.messages)
    start = time.monotonic()
    zygote.start(*(("run",) if kill.mode == "run" else ("run", "--once")))
    while not zygote.exited() and time.monotonic() - start < timeout:
        if kill.trigger == "delay":
            if time.monotonic() - start >= kill.amount:
                break
            time.sleep(0.01)
        elif kill.trigger == "sent":
            try:
                sink.wait_for(base_sent + int(kill.amount), timeout=0.05)
                break
            except TimeoutError:
                pass
        else:
            if db.scalar("SELECT count(*) FROM messages") >= base_stored + kill.amount:
                break
            time.sleep(0.02)
    if kill.jitter:
        zygote.exited(kill.jitter)
    zygote.kill()
    code = zygote.result()
    kill.exited_first = code != -signal.SIGKILL
    kill.seconds = time.monotonic() - start
    kill.stored_at_kill = db.scalar("SELECT count(*) FROM messages")
    kill.sent_at_kill = len(sink.messages)


def _plan_kill(rng: random.Random, left: int, stored: int, due: int, sent: int) -> Kill:
    """About 40% of the kills land while storing, the rest while sending. Each trigger
    asks for a share of the work still to do, so the `left` kills still to land find
    work (a run that finished first is no kill)."""
    mode = rng.choice(("run", "once"))
    if rng.random() < 0.1:
        return Kill(mode, "delay", round(rng.uniform(0.05, 0.5), 2))
    if stored < TOTAL:  # then a little later: inside the next batch's transaction
        share = max(1, (TOTAL - stored) * 2 // (left * 5 // 2 + 1))
        return Kill(mode, "stored", rng.randint(max(1, share // 3), share),
                    round(rng.uniform(0, 0.3), 2))
    if rng.random() < 0.2:  # the daemon sends at start and when a cycle stored mail
        return Kill("run", "delay", round(rng.uniform(0.3, 1.0), 2))
    share = max(1, (due - sent) // (left + 1))  # at once: between the server's 250 and the mark
    return Kill("once", "sent", rng.randint(1, share),
                rng.choice((0.0, 0.0, round(rng.uniform(0, 0.1), 3))))


def test_sigkill_soak(imap_account: ImapAccount, db_url: str, smtp_sink: SmtpSink,
                      tmp_path: Path) -> None:
    seed = int(os.environ.get("MAILD_SOAK_SEED", DEFAULT_SEED))
    backend = "sqlite" if db_url.startswith("sqlite") else "postgresql"
    kills = KILLS[backend]
    print(f"\nkill soak: seed={seed} (replay: MAILD_SOAK_SEED={seed}) backend={backend} "
          f"kills={kills}")
    rng = random.Random(seed)
    corpus = make_corpus(rng, TOTAL)
    append(imap_account, "INBOX", [(raw, None) for raw in corpus.raws])
    config = tmp_path / "maild.toml"
    config.write_text(maild_config_text(
        address=imap_account.address, imap_port=imap_account.port,
        ca_file=imap_account.ca_file, db_url=db_url, password_env=PASSWORD_ENV,
        smtp_port=smtp_sink.port, batch_size=BATCH, autoreply_extra=AUTORELAX))
    run_maild(config, imap_account, "db", "upgrade")
    db = Db(db_url)
    zygote = Zygote(config, imap_account)
    started = time.monotonic()
    log = []
    try:
        # Until `kills` kills landed mid-run (a run that finished before its trigger does
        # not count; maild may be faster than a trigger), at most twice as many attempts.
        while sum(not k.exited_first for k in log) < kills and len(log) < 2 * kills:
            stored = db.scalar("SELECT count(*) FROM messages WHERE direction = 'in'")
            left = kills - sum(not k.exited_first for k in log)
            kill = _plan_kill(rng, left, stored, len(corpus.new), len(smtp_sink.messages))
            _kill_one(zygote, kill, db, smtp_sink)
            log.append(kill)
        killed = time.monotonic() - started
        for i, k in enumerate(log):
            print(f"  kill {i + 1:2}: {k.mode:4} {k.trigger:6} {k.amount:<4} +{k.jitter:<5} after "
                  f"{k.seconds:4.1f} s -> stored {k.stored_at_kill:3}, sink {k.sent_at_kill:3}"
                  f"{' (exited first)' if k.exited_first else ''}")
        db.wait_lock_free(imap_account.address)
        # Finish cleanly, 11 minutes on: claims left by a kill after SMTP are stale by then.
        later = (datetime.now(UTC) + timedelta(minutes=11)).isoformat()
        zygote.run("run", "--once", "--now", later)
        sent = len(smtp_sink.messages)
        zygote.run("run", "--once", "--now", later)
        assert len(smtp_sink.messages) == sent, "a clean rerun sent mail again"
        check_tickets(db, corpus)
        raw_dupes = check_replies(smtp_sink, corpus, imap_account.address)
        outbox = Counter(str(s) for (s,) in db.rows("SELECT status FROM outbox"))
        sent_copies = Counter(email.message_from_bytes(m)["Message-ID"]
                              for m in folder_messages(imap_account, "Sent"))
        print(f"kill soak: {sum(not k.exited_first for k in log)} kills in {killed:.1f} s, "
              f"{len(corpus.new)} due replies, raw duplicates at the sink: {raw_dupes}, "
              f"duplicate copies in Sent: {sum(n - 1 for n in sent_copies.values())}, "
              f"outbox {dict(outbox)}")
        assert outbox == {"sent": len(corpus.new)}
        assert sum(not k.exited_first for k in log) >= kills, "kills must land mid-run"
        # At-least-once edges, bounded: a kill between the SMTP server's 250 and the mark
        # resends that one message; a kill mid-copy re-APPENDs at most one chunk to Sent.
        assert raw_dupes <= kills
        assert sum(n - 1 for n in sent_copies.values()) <= SENT_COPY_CHUNK * kills
    finally:
        zygote.close()
        db.engine.dispose()


HISTORY_TOTAL = 400
HISTORY_KILLS = {"sqlite": 10, "postgresql": 6}
LIVE_TOTAL = 30


def history_corpora(rng: random.Random) -> tuple[Corpus, Corpus, Corpus]:
    """(history, live, expected): 400 mails that arrived 5 days ago (all history), and
    30 live ones among which 5 replies to history conversations. `expected` is what
    check_tickets and check_replies read: the history's conversations are due no reply
    (listed with the machines: a ticket each, nothing sent), the live ones one each."""
    history, live = make_corpus(rng, HISTORY_TOTAL, "h"), make_corpus(rng, LIVE_TOTAL, "l")
    for i, root in enumerate(rng.sample(history.new, 5)):
        mid = f"<soakl-r{i}@example.org>"
        live.raws.append(_mail(f"Customer <{history.customer[root]}>", "Re: my question", mid,
                               "Any news? I wrote a while ago.",
                               f"In-Reply-To: {root}\r\nReferences: {root}\r\n"))
        live.followups[mid] = root
    expected = Corpus(new=list(live.new),
                      machines=[*history.new, *history.machines, *live.machines],
                      followups={**history.followups, **live.followups},
                      customer=dict(live.customer))
    return history, live, expected


@pytest.mark.slow
def test_sigkill_soak_during_history_import(imap_account: ImapAccount, db_url: str,
                                            smtp_sink: SmtpSink, tmp_path: Path) -> None:
    """Issue 17: kills while a first run imports history (and live mail arrives in the
    middle of it): nothing lost, nothing stored twice, the history checkpoint ends
    complete, live replies to old conversations join them, each live mail is answered
    once and no history mail is answered."""
    seed = int(os.environ.get("MAILD_SOAK_SEED", DEFAULT_SEED))
    backend = "sqlite" if db_url.startswith("sqlite") else "postgresql"
    kills = HISTORY_KILLS[backend]
    print(f"\nhistory kill soak: seed={seed} backend={backend} kills={kills}")
    rng = random.Random(seed)
    history, live, expected = history_corpora(rng)
    old = datetime.now(UTC) - timedelta(days=5)
    append(imap_account, "INBOX", [(raw, old + timedelta(seconds=i))
                                   for i, raw in enumerate(history.raws)])
    config = tmp_path / "maild.toml"
    config.write_text(maild_config_text(
        address=imap_account.address, imap_port=imap_account.port,
        ca_file=imap_account.ca_file, db_url=db_url, password_env=PASSWORD_ENV,
        smtp_port=smtp_sink.port, batch_size=BATCH, autoreply_extra=AUTORELAX,
        extra="[history]\nchunk_seconds = 0.2\n"))
    run_maild(config, imap_account, "db", "upgrade")
    db = Db(db_url)
    zygote = Zygote(config, imap_account)
    log: list[Kill] = []
    try:
        while sum(not k.exited_first for k in log) < kills and len(log) < 2 * kills:
            landed = sum(not k.exited_first for k in log)
            if landed == kills // 2 and not any(k.trigger == "live" for k in log):
                append(imap_account, "INBOX", [(raw, None) for raw in live.raws])
                log.append(Kill("run", "live", 0, exited_first=True))  # a marker, no kill
            stored = db.scalar("SELECT count(*) FROM messages WHERE direction = 'in'")
            if stored >= HISTORY_TOTAL:  # all in: a count to wait for would never come
                kill = Kill(rng.choice(("run", "once")), "delay",
                            round(rng.uniform(0.05, 0.5), 2))
            else:
                share = max(2, (HISTORY_TOTAL - stored) // (kills - landed + 1))
                kill = Kill(rng.choice(("run", "once")), "stored", rng.randint(1, share),
                            round(rng.uniform(0, 0.3), 2))
            _kill_one(zygote, kill, db, smtp_sink, timeout=60.0)
            log.append(kill)
        for i, k in enumerate(log):
            print(f"  {i + 1:2}: {k.mode:4} {k.trigger:6} {k.amount:<4} +{k.jitter:<5} -> "
                  f"stored {k.stored_at_kill:3}{' (exited first)' if k.exited_first else ''}")
        db.wait_lock_free(imap_account.address)
        if not any(k.trigger == "live" for k in log):
            append(imap_account, "INBOX", [(raw, None) for raw in live.raws])
        later = (datetime.now(UTC) + timedelta(minutes=11)).isoformat()
        zygote.run("run", "--once", "--now", later)
        sent = len(smtp_sink.messages)
        zygote.run("run", "--once", "--now", later)
        assert len(smtp_sink.messages) == sent, "a clean rerun sent mail again"
        check_tickets(db, expected)
        raw_dupes = check_replies(smtp_sink, expected, imap_account.address)
        assert raw_dupes <= kills
        assert db.rows("SELECT done, total, finished_at IS NOT NULL FROM history_imports "
                       "WHERE role = 'inbox'") == [(HISTORY_TOTAL, HISTORY_TOTAL, True)]
        assert sum(not k.exited_first for k in log) >= kills // 2, "kills must land mid-run"
    finally:
        zygote.close()
        db.engine.dispose()


def check_tickets(db: Db, corpus: Corpus) -> None:
    rows = db.rows("SELECT message_id, ticket_id FROM messages WHERE direction = 'in'")
    per_id = Counter(mid for mid, _ in rows)
    assert {m for m, n in per_id.items() if n > 1} == set(), "stored twice"
    ticket_of = {str(mid): int(str(tid)) for mid, tid in rows}
    expected = set(corpus.new) | set(corpus.machines) | set(corpus.followups)
    assert set(ticket_of) == expected, (
        f"missing {sorted(expected - set(ticket_of))[:5]}, extra "
        f"{sorted(set(ticket_of) - expected)[:5]}")
    roots = [ticket_of[m] for m in (*corpus.new, *corpus.machines)]
    assert len(set(roots)) == len(roots), "two conversations share a ticket"
    for follow, root in corpus.followups.items():
        assert ticket_of[follow] == ticket_of[root], f"{follow} not in {root}'s ticket"
    assert db.scalar("SELECT count(*) FROM tickets") == len(roots)
    assert db.scalar("SELECT count(*) FROM quarantine") == 0
    autos = Counter(int(str(t)) for (t,) in db.rows(
        "SELECT ticket_id FROM messages WHERE auto = true AND direction = 'out'"))
    assert autos == Counter({ticket_of[m]: 1 for m in corpus.new})


def check_replies(sink: SmtpSink, corpus: Corpus, support: str) -> int:
    """Each due reply exactly once by Message-ID; returns the number of raw resends."""
    answers: dict[str, set[str]] = defaultdict(set)
    raws: dict[str, set[bytes]] = defaultdict(set)
    for m in sink.messages:
        msg = m.parsed()
        mid, answered = str(msg["Message-ID"]), str(msg["In-Reply-To"])
        assert msg["Auto-Submitted"] == "auto-replied" and m.mail_from == support, mid
        assert str(msg["References"] or "").split()[-1:] == [answered], mid
        assert m.rcpt_tos == (corpus.customer.get(answered),), f"{mid} to {m.rcpt_tos}"
        answers[answered].add(mid)
        raws[mid].add(m.raw)
    twice = {k: v for k, v in answers.items() if len(v) > 1}
    assert not twice, f"different Message-IDs answer one mail: {twice}"
    assert set(answers) == set(corpus.new), (
        f"unanswered {sorted(set(corpus.new) - set(answers))[:5]}, wrongly answered "
        f"{sorted(set(answers) - set(corpus.new))[:5]}")
    assert all(len(r) == 1 for r in raws.values()), "a resend differs from the first send"
    return len(sink.messages) - len(raws)


def queued_replies(db_url: str, clock: FixedClock, n: int) -> sessionmaker[Session]:
    """A fresh database with `n` auto-replies queued in the outbox."""
    sessions = migrated_sessions(db_url)
    with sessions.begin() as s:
        mailbox = repo.get_or_create_mailbox(s, "support@example.com", clock.now())
        for i in range(n):
            out = compose(sender="support@example.com", sender_name="Support",
                          to=f"c{i}@example.org", to_name="", subject="Re: help", body="Soon.",
                          date=clock.now(), ticket_id=None, in_reply_to=f"<m{i}@example.org>",
                          references=[f"<m{i}@example.org>"])
            enqueue(s, out, mailbox_id=mailbox.id, ticket_id=None, kind="auto_reply",
                    now=clock.now())
    return sessions


def test_two_senders_never_send_one_row_twice(db_url: str) -> None:
    """The daemon's scheduler job and its main loop may deliver at the same time (or a
    cron `run --once` beside the daemon): on SQLite, where FOR UPDATE is a no-op, both
    used to read the same queued row and send it twice (10 of 200 here)."""
    clock = FixedClock(datetime(2026, 11, 2, 10, tzinfo=UTC))
    sessions = queued_replies(db_url, clock, 200)
    sent: Counter[bytes] = Counter()
    guard = threading.Lock()

    def smtp(raw: bytes, _sender: str, _rcpts: Sequence[str]) -> str:
        with guard:
            sent[raw] += 1
        time.sleep(0.001)
        return "250 ok"

    def deliver() -> None:
        OutboxSender(sessions, clock, smtp, own_addresses=["support@example.com"]).deliver_due()

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(sent) == 200, f"{sum(n > 1 for n in sent.values())} row(s) sent twice"
    assert max(sent.values()) == 1, f"{sum(n > 1 for n in sent.values())} row(s) sent twice"
    sessions.kw["bind"].dispose()


def test_concurrent_deliveries_copy_each_sent_message_to_sent_once(db_url: str) -> None:
    """The daemon starts its outbox job at once beside the main loop: both deliver, and
    both used to APPEND the same sent messages to Sent (280 duplicate copies in one
    soak). daemon.deliver_outbox runs one delivery at a time per process."""
    from maild.delivery import deliver_outbox

    clock = FixedClock(datetime(2026, 11, 2, 10, tzinfo=UTC))
    sessions = queued_replies(db_url, clock, 50)
    copied: Counter[bytes] = Counter()
    guard = threading.Lock()

    def append_sent(raws: Sequence[bytes]) -> None:
        time.sleep(0.05)  # an IMAP APPEND takes a while: the window the race needs
        with guard:
            copied.update(raws)

    class App:  # the two things deliver_outbox asks of maild.app.App
        def outbox_sender(self) -> OutboxSender:
            return OutboxSender(sessions, clock, lambda *a: "250 ok",
                                own_addresses=["support@example.com"], append_sent=append_sent)

    threads = [threading.Thread(target=deliver_outbox, args=(App(),)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(copied) == 50 and max(copied.values()) == 1, \
        f"{sum(n > 1 for n in copied.values())} message(s) copied to Sent twice"
    sessions.kw["bind"].dispose()
