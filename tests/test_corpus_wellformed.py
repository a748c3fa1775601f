"""The golden threading corpus (tests/corpus/threading) is self-consistent.

These tests check the corpus, not maild's threading: every file is listed once
and exists, every message sits in exactly one expected ticket, dates and MIME
parse (except the one message marked broken), subject tags and References point
at the ticket the manifest says, and a small independent model of the stated
threading rules, run in ingest order, reproduces the expected tickets.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import getaddresses, parsedate_to_datetime

import pytest

from tests.corpus.loader import CORPUS_ROOT, Corpus, CorpusMessage, load_corpus

NAME = "threading"
WINDOW = timedelta(days=7)
MSGID_RE = re.compile(r"<[^<>\s]+>")
TAG_RE = re.compile(r"\[#(\d+)\]")
PREFIX_RE = re.compile(
    r"^\s*(?:(?:re|fwd|fw|aw|wg|sv|vs|ynt|i̇lt|İlt|ilt|antw|réf|tr)\s*:\s*|\[#\d+\]\s*)",
    re.IGNORECASE)


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return load_corpus(NAME)


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads((CORPUS_ROOT / NAME / "manifest.json").read_text(encoding="utf-8"))


def parse(msg: CorpusMessage) -> EmailMessage:
    return email.message_from_bytes(msg.raw, policy=email.policy.default)


def subject_of(msg: CorpusMessage) -> str:
    return " ".join(str(parse(msg)["Subject"] or "").split())


def from_of(msg: CorpusMessage) -> str:
    return getaddresses([str(parse(msg)["From"])])[0][1].lower()


def recipients_of(msg: CorpusMessage) -> set[str]:
    m = parse(msg)
    values = [str(v) for key in ("To", "Cc") for v in (m.get_all(key) or [])]
    return {addr.lower() for _, addr in getaddresses(values)}


def ids_of(msg: CorpusMessage, header: str) -> list[str]:
    return MSGID_RE.findall(" ".join(str(v) for v in parse(msg).get_all(header) or []))


def normalize(subject: str) -> str:
    rest = subject
    while (m := PREFIX_RE.match(rest)) is not None:
        rest = rest[m.end():]
    return " ".join(TAG_RE.sub(" ", rest).split()).casefold()


# --------------------------------------------------------------------- listing


def test_every_file_listed_once_and_exists(manifest: dict) -> None:
    base = CORPUS_ROOT / NAME
    listed = [m["file"] for m in manifest["messages"]]
    assert len(listed) == len(set(listed)), "a file is listed twice"
    on_disk = sorted(p.name for p in base.glob("*.eml"))
    assert sorted(listed) == on_disk
    for name in listed:
        assert (base / name).is_file()
    assert manifest["mailbox"] == "support@example.com"
    assert 25 <= len(listed) <= 35 and 10 <= len(manifest["tickets"]) <= 14


def test_sizes(corpus: Corpus) -> None:
    for msg in corpus.messages:
        limit = 40_000 if "attachments" in msg.file else 8_000
        assert len(msg.raw) < limit, msg.file


def test_manifest_order_is_ingest_order(corpus: Corpus) -> None:
    folders = [m.folder for m in corpus.messages]
    assert folders == sorted(folders, key=("INBOX", "Sent").index), "INBOX must precede Sent"
    assert corpus.ingest_order() == corpus.messages
    for folder in ("INBOX", "Sent"):
        dates = [m.internaldate for m in corpus.folder(folder)]
        assert dates == sorted(dates), f"{folder} not in INTERNALDATE order"
    for msg in corpus.messages:
        assert msg.internaldate.tzinfo is not None
        utc = msg.internaldate.astimezone(UTC)
        assert (utc.year, utc.month) == (2026, 11), msg.file


def test_every_message_in_exactly_one_ticket(corpus: Corpus) -> None:
    files = [m.file for m in corpus.messages]
    placed = [f for t in corpus.tickets for f in t.messages]
    assert sorted(placed) == sorted(files)
    assert len(placed) == len(set(placed))
    assert [t.number for t in corpus.tickets] == list(range(1, len(corpus.tickets) + 1))


def test_tickets_are_numbered_in_creation_order(corpus: Corpus) -> None:
    openers = [m.file for m in corpus.ingest_order() if m.rule == "new"]
    assert openers == [t.messages[0] for t in corpus.tickets]


# --------------------------------------------------------------------- tickets


def test_ticket_fields_match_messages(corpus: Corpus) -> None:
    for t in corpus.tickets:
        msgs = [corpus.message(f) for f in t.messages]
        first = msgs[0]
        assert first.folder == "INBOX", t.number
        assert subject_of(first) == t.subject, t.number
        assert from_of(first) == t.customer, t.number
        assert [m.internaldate for m in msgs] == sorted(m.internaldate for m in msgs), t.number
        sent = [m.file for m in msgs if m.folder == "Sent"]
        assert t.agent_replies == len(sent), t.number
        assert t.first_agent_reply == (sent[0] if sent else None), t.number
        for m in msgs:
            if m.folder == "INBOX":
                assert from_of(m) == t.customer, m.file
            else:
                assert from_of(m) == corpus.mailbox, m.file
                assert t.customer in recipients_of(m), m.file
    assert sum(t.agent_replies >= 1 for t in corpus.tickets) >= 4
    assert any(t.agent_replies == 2 for t in corpus.tickets)


def test_subject_tags_name_the_messages_own_ticket(corpus: Corpus) -> None:
    for msg in corpus.messages:
        for tag in TAG_RE.findall(subject_of(msg)):
            assert int(tag) == corpus.ticket_of(msg.file).number, msg.file


def test_references_stay_inside_the_ticket(corpus: Corpus) -> None:
    owner = {}
    for msg in corpus.messages:
        [mid] = ids_of(msg, "Message-ID")
        assert mid not in owner, f"duplicate Message-ID {mid}"
        owner[mid] = corpus.ticket_of(msg.file).number
    for msg in corpus.messages:
        for mid in ids_of(msg, "In-Reply-To") + ids_of(msg, "References"):
            if mid in owner:
                assert owner[mid] == corpus.ticket_of(msg.file).number, (msg.file, mid)


# ------------------------------------------------------------------- MIME/dates


def test_eml_parse_cleanly_except_the_broken_one(corpus: Corpus) -> None:
    broken = [m.file for m in corpus.messages if m.broken]
    assert len(broken) == 1
    for msg in corpus.messages:
        m = parse(msg)
        defects = [type(d).__name__ for v in m.values() for d in getattr(v, "defects", ())]
        for part in m.walk():
            if not part.is_multipart():
                part.get_content()  # decodes QP/base64/charsets; records defects
            defects += [type(d).__name__ for d in part.defects]
        assert m["From"] and m["Subject"] and m["Message-ID"] and m["Date"], msg.file
        if msg.broken:
            assert defects, f"{msg.file} is marked broken but parses cleanly"
        else:
            assert not defects, (msg.file, defects)


def test_dates_parse_and_precede_internaldate(corpus: Corpus) -> None:
    absurd = [m for m in corpus.messages if m.absurd_date]
    assert len(absurd) == 1
    for msg in corpus.messages:
        date = parsedate_to_datetime(str(parse(msg)["Date"]))
        assert date.tzinfo is not None, msg.file
        if msg.absurd_date:
            assert date.year == 1999
        else:
            lag = msg.internaldate - date
            assert timedelta(0) <= lag <= timedelta(minutes=10), (msg.file, lag)


def test_maild_parse_reads_every_message(corpus: Corpus) -> None:
    from maild.parse import parse_message

    for msg in corpus.messages:
        pm = parse_message(msg.raw)
        assert pm.from_addr == from_of(msg), msg.file
        assert pm.subject == subject_of(msg), msg.file
        assert not pm.message_id_synthetic, msg.file
        if not msg.broken:
            assert pm.parse_error is None and pm.text.strip(), msg.file
    names = [a.filename for a in parse_message(corpus.message(
        "17-attachments-pdf-png-path.eml").raw).attachments]
    assert len(names) == 3 and all("/" not in n and "\\" not in n for n in names)


# ----------------------------------------------------------- rules, modelled


def test_a_model_of_the_rules_reproduces_the_expected_tickets(corpus: Corpus) -> None:
    """Rules in order: references, [#N] tag (of a ticket the sender is in, or any
    for Sent), same customer + normalised subject within 7 days (not forwards),
    else new. The fallback window is checked under both readings (from the
    ticket's last customer message and from its creation) so the corpus never
    depends on which one maild picks."""
    by_mid: dict[str, int] = {}
    customer: dict[int, str] = {}
    norm: dict[int, str] = {}
    created: dict[int, datetime] = {}
    last_in: dict[int, datetime] = {}
    got: dict[str, tuple[int, str]] = {}
    for msg in corpus.ingest_order():
        outbound = msg.folder == "Sent"
        subject = subject_of(msg)
        who = (recipients_of(msg) - {corpus.mailbox}).pop() if outbound else from_of(msg)
        ids = ids_of(msg, "In-Reply-To") + ids_of(msg, "References")[::-1]
        decision: tuple[int, str] | None = None
        for mid in ids:
            if mid in by_mid:
                decision = (by_mid[mid], "references")
                break
        if decision is None:
            for tag in map(int, TAG_RE.findall(subject)):
                if tag in customer and (outbound or customer[tag] == who):
                    decision = (tag, "subject-tag")
                    break
        forward = re.match(r"^\s*(fwd?|wg|tr|i̇lt|ilt)\s*:", subject, re.IGNORECASE)
        if decision is None and not outbound and not forward:
            hits = [n for n in customer if customer[n] == who and norm[n] == normalize(subject)]
            if hits:
                n = max(hits)
                near_last = msg.internaldate - last_in[n] <= WINDOW
                near_created = msg.internaldate - created[n] <= WINDOW
                assert near_last == near_created, f"{msg.file}: window reading is ambiguous"
                if near_last:
                    decision = (n, "subject-fallback")
        if decision is None:
            assert not outbound, f"{msg.file}: an agent reply would open a ticket"
            n = len(customer) + 1
            customer[n], norm[n], created[n] = who, normalize(subject), msg.internaldate
            decision = (n, "new")
        if not outbound:
            last_in[decision[0]] = msg.internaldate
        [mid] = ids_of(msg, "Message-ID")
        by_mid[mid] = decision[0]
        got[msg.file] = decision
    expected = {m.file: (corpus.ticket_of(m.file).number, m.rule) for m in corpus.messages}
    assert got == expected
