"""Classification: real raw messages, parsed for real, with the exact sender/kind/reason.

Three layers: the golden machine corpus (tests/corpus/machine, written from the big
senders' real headers), every human message of the project (0 machine allowed), and
flufl.bounce's ~117 real bounces (fetched by scripts/install.sh into .cache/).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from maild.bounces import bounce_details
from maild.classify import (
    AGENT,
    CUSTOMER,
    MACHINE,
    MACHINE_KINDS,
    Classification,
    ClassifyContext,
    classify,
)
from maild.loopguard import check_message
from maild.parse import parse_message
from tests import test_loopguard as lg
from tests.corpus.loader import CORPUS_ROOT, load_corpus

ROOT = Path(__file__).resolve().parent.parent
MACHINE_DIR = CORPUS_ROOT / "machine"
MANIFEST = json.loads((MACHINE_DIR / "manifest.json").read_text(encoding="utf-8"))
OWN = frozenset(MANIFEST["own_addresses"])
CTX = ClassifyContext(own_addresses=OWN)
FLUFL_DIR = ROOT / ".cache" / "corpora" / "flufl_bounce"


def person(subject: str, body: str = "Hello, a question about my order 4411.",
           frm: str = "Zeynep Celik <zeynep@customer.example>", extra: str = "") -> bytes:
    """A plain message from a person (Thunderbird-like headers), CRLF line ends."""
    lines = [f"Return-Path: <{frm.split('<')[-1].rstrip('>')}>", f"From: {frm}",
             "To: support@example.com", f"Subject: {subject}",
             "Date: Mon, 2 Nov 2026 10:00:00 +0300", "Message-ID: <p-1@customer.example>",
             "User-Agent: Mozilla Thunderbird", *([extra] if extra else []),
             "MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8", "", body, ""]
    return "\r\n".join(lines).encode("utf-8")


def classify_person(*args: str, ctx: ClassifyContext = CTX, **kwargs: str) -> Classification:
    return classify(parse_message(person(*args, **kwargs)), ctx)


# --- the golden machine corpus -----------------------------------------------------------

@pytest.mark.parametrize("entry", MANIFEST["messages"], ids=lambda e: e["file"])
def test_machine_corpus(entry: dict[str, str]) -> None:
    msg = parse_message((MACHINE_DIR / entry["file"]).read_bytes())
    c = classify(msg, CTX)
    assert (c.sender, c.kind, c.reason) == (entry["sender"], entry["kind"], entry["reason"])
    assert c.machine and c.kind in MACHINE_KINDS and c.description
    verdict = check_message(msg, CTX)
    assert verdict.automated and verdict.reason == c.reason


def test_machine_corpus_lists_every_file_and_every_kind() -> None:
    files = {e["file"] for e in MANIFEST["messages"]}
    assert files == {p.name for p in MACHINE_DIR.glob("*.eml")}
    assert {e["kind"] for e in MANIFEST["messages"]} == set(MACHINE_KINDS)


def test_agents_out_of_office_is_machine_mail() -> None:
    """Machine markers win over agent addresses."""
    ctx = ClassifyContext(own_addresses=OWN,
                          agent_addresses=frozenset({"mehmet.kaya@gmail.example"}))
    c = classify(parse_message((MACHINE_DIR / "gmail-vacation.eml").read_bytes()), ctx)
    assert (c.sender, c.kind) == (MACHINE, "auto-reply")


def test_auto_response_suppress_alone_is_no_machine_marker() -> None:
    """The Turkish OOF is caught by its subject; without it, X-ARS only stops the ETA reply."""
    text = (MACHINE_DIR / "turkish-otomatik-yanit.eml").read_bytes().replace(
        b"Otomatik_yan=FDt:_", b"")
    c = classify(parse_message(text), CTX)
    assert (c.sender, c.no_autoreply) == (CUSTOMER, "auto-response-suppress")


# --- agents, own addresses, customers ----------------------------------------------------

AGENTS = ClassifyContext(own_addresses=OWN, agent_addresses=frozenset({"alice@example.com"}),
                         company_domains=frozenset({"example.com"}))


@pytest.mark.parametrize(("frm", "ctx", "expected"), [
    ("Alice <alice@example.com>", AGENTS, (AGENT, "agent-address")),
    ("Alice <Alice+tickets@Example.com>", AGENTS, (AGENT, "agent-address")),
    ("Bob <bob@EXAMPLE.com>", AGENTS, (AGENT, "company-domain")),
    ("Support <support@example.com>", AGENTS, (AGENT, "own-address")),
    ("Support <support+tr@example.com>", CTX, (AGENT, "own-address")),
    ("Eve <eve@mail.example.com>", AGENTS, (CUSTOMER, "human")),  # exact domain only
    ("Eve <eve@example.com.evil.example>", AGENTS, (CUSTOMER, "human")),
    ("Bob <bob@example.com>", CTX, (CUSTOMER, "human")),  # no company domain by default
])
def test_agents_and_own_addresses(frm: str, ctx: ClassifyContext,
                                  expected: tuple[str, str]) -> None:
    c = classify_person("Re: [#4] Order missing", frm=frm, ctx=ctx)
    assert (c.sender, c.reason) == expected
    assert c.kind is None
    assert c.no_autoreply == (None if expected[0] == CUSTOMER else expected[1])
    assert check_message(parse_message(person("Re: x", frm=frm)), ctx).automated is \
        (expected[0] == AGENT)


def test_customer_with_our_reply_to_gets_no_eta_reply_but_stays_a_customer() -> None:
    c = classify_person("Help", extra="Reply-To: <support+tr@example.com>")
    assert (c.sender, c.reason, c.no_autoreply) == (CUSTOMER, "human", "own-address")


# --- human near-misses -------------------------------------------------------------------

PASTED_BOUNCE = """Hi, my mail to your sales team came back with this:

This is the mail system at host mx.customer.example.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

                   The mail system

<sales@example.com>: host mx.example.com[192.0.2.10] said: 550 5.1.1
    <sales@example.com>: Recipient address rejected: User unknown

Can you check the address?"""


@pytest.mark.parametrize("subject", [
    "Re: out of office hours question",
    "Out of office hours support?",
    "Automatic replies are not working in my account",
    "Autoreply settings help",
    "İzindeyim ama siparişim hâlâ gelmedi",
    "Ofis dışında çalışma saatleriniz nedir?",
    "Fwd: Automatic reply: Order 4411",
    "Fwd: Undelivered Mail Returned to Sender",
    "Delivery failed for my order 4411, the courier says the address is wrong",
    "Report domain question: can you send me the submitter list?",
    "Your sales address bounces",
    "Auto: my car insurance renewal",
])
def test_human_near_misses(subject: str) -> None:
    for body in ("Hello, a question about my order 4411.", PASTED_BOUNCE):
        if "bounces" in subject or subject.startswith("Fwd: Und"):
            body = PASTED_BOUNCE
        c = classify_person(subject, body=body)
        assert (c.sender, c.no_autoreply) == (CUSTOMER, None), (subject, c)


def test_abuse_address_forwarding_someone_elses_mail_is_a_customer() -> None:
    """The abuse-report marker needs the attached message to be maild's own."""
    text = (MACHINE_DIR / "arf-mixed-rfc822.eml").read_text(encoding="utf-8").replace(
        "<maild.t61.", "<CAF00d.t61.").replace(
        "From: Example Support <support@example.com>\nTo: someone",
        "From: x@other.example\nTo: someone")
    c = classify(parse_message(text.encode()), CTX)
    assert c.sender == CUSTOMER
    # ...and it is our own message again when From is one of our addresses
    c = classify(parse_message(text.replace("From: x@other.example", "From: support@example.com")
                               .encode()), CTX)
    assert (c.kind, c.reason) == ("report", "abuse-report")


# --- no false positives: every human message in the project -----------------------------

def test_threading_corpus_has_no_machine_mail() -> None:
    corpus = load_corpus("threading")
    ctx = ClassifyContext(own_addresses=frozenset({corpus.mailbox}))
    for m in corpus.messages:
        c = classify(parse_message(m.raw), ctx)
        expected = AGENT if m.folder == "Sent" else CUSTOMER
        assert c.sender == expected, (m.file, c)
        if expected == CUSTOMER:
            assert c.no_autoreply is None, (m.file, c)


@pytest.mark.parametrize("name", ["CUSTOMER", "OUTLOOK_CUSTOMER", "FORWARDED_BOUNCE",
                                  "AGENT_FROM_OWN_ADDRESS"])
def test_loopguard_human_messages(name: str) -> None:
    c = classify(parse_message(lg.raw(getattr(lg, name))), lg.CTX)
    assert c.sender == (AGENT if name == "AGENT_FROM_OWN_ADDRESS" else CUSTOMER), c


# --- flufl.bounce's real bounces ---------------------------------------------------------

# Files that are not bounce-kind, each with the reason (everything else must be kind bounce).
FLUFL_NOT_BOUNCE = {
    "groupwise_03.txt": (CUSTOMER, None, "a person's Outlook reply; flufl's own tests keep it "
                         "as 'not a bounce but has confused groupwise'"),
    "qmail_08.txt": (MACHINE, "auto-reply", "an autoresponder ('Auto reply', Precedence: "
                     "auto_reply), kept there to test a qmail detector crash"),
    "bounce_01.txt": (MACHINE, "auto-reply", "no From, subject 'Mail Error', a format flufl "
                      "does not recognise either; only its X-Autogenerated header catches it"),
    "sina_01.txt": (MACHINE, "bulk", "sina.com's bounce: the Sina detector needs the raw "
                    "MIME parts (bounce_details has them); classify sees its List-* headers"),
}


def _flufl_files() -> list[Path]:
    files = sorted(FLUFL_DIR.glob("*.txt"))
    if not files:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{FLUFL_DIR} missing in CI: scripts/install.sh did not fetch it")
        pytest.skip(f"{FLUFL_DIR} missing: run scripts/install.sh to fetch flufl's corpus")
    return files


def test_flufl_corpus_is_machine_mail() -> None:
    files = _flufl_files()
    assert len(files) > 100
    wrong = []
    for path in files:
        msg = parse_message(path.read_bytes())
        c = classify(msg, ClassifyContext())
        expected = FLUFL_NOT_BOUNCE.get(path.name, (MACHINE, "bounce", ""))[:2]
        if (c.sender, c.kind) != expected:
            wrong.append(f"{path.name}: {c.sender}/{c.kind}/{c.reason} | {msg.subject[:60]}")
        if path.name != "groupwise_03.txt":
            assert check_message(msg, ClassifyContext()).automated, path.name
    print("\n".join(wrong))
    assert not wrong


# (file, permanent, delayed) as flufl's tests/test_detectors.py expects them
FLUFL_EXPECTED = [
    ("postfix_01.txt", {"xxxxx@local.ie"}, set()),
    ("qmail_01.txt", {"userx@example.de"}, set()),
    ("yahoo_04.txt", {"userx@example.es", "usery@example.uk"}, set()),
    ("smtp32_04.txt", {"after_another@example.net", "one_bad_address@example.net"}, set()),
    ("netscape_01.txt", {"aaaaa@corel.com", "bbbbb@corel.com"}, set()),
    ("dsn_01.txt", {"userx@example.com"}, set()),
    ("dsn_05.txt", set(), {"userx@example.cz"}),
    ("simple_03.txt", set(), {"userx@example.za"}),
    ("groupwise_03.txt", set(), set()),
]


@pytest.mark.parametrize(("name", "permanent", "delayed"), FLUFL_EXPECTED,
                         ids=[e[0] for e in FLUFL_EXPECTED])
def test_bounce_details_on_flufl_corpus(name: str, permanent: set[str],
                                        delayed: set[str]) -> None:
    _flufl_files()
    d = bounce_details((FLUFL_DIR / name).read_bytes())
    assert {r.address for r in d.recipients} == permanent
    assert {r.address for r in d.delayed} == delayed
    assert all(len(r.diagnostic) <= 500 and "\n" not in r.diagnostic for r in d.recipients)


# --- bounce_details on our own DSNs ------------------------------------------------------

@pytest.mark.parametrize(("file", "address", "status", "diagnostic", "original"), [
    ("postfix-dsn.eml", "nobody@customer.example", "5.1.1",
     "smtp; 550 5.1.1 <nobody@customer.example>: Recipient address rejected: User unknown "
     "in virtual mailbox table", "<maild.t45.9a8b7c6d5e4f40312233445566778899@example.com>"),
    ("exchange-ndr.eml", "ali.demir@contoso.example", "5.1.10",
     "smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address "
     "lookup", "<maild.t48.77e6d5c4b3a2419081726354a5b6c7d8@example.com>"),
    ("gmail-dsn.eml", "daniel.okafor.old@gmail.example", "5.1.1", None,
     "<maild.t50.1a2b3c4d5e6f47089a0b1c2d3e4f5a6b@example.com>"),
    ("exim-mail-delivery-failed.eml", "jonas.becker@webhost.example", "5.0.0",
     "smtp; 550 5.2.1 Mailbox disabled for this recipient",
     "<maild.t5.4d3c2b1a0f9e48d7c6b5a49382716050@example.com>"),
    ("qmail-failure-notice.eml", "info@lumen-studio.example", "5.1.1",
     "<info@lumen-studio.example>: Sorry, no mailbox here by that name. (#5.1.1)",
     "<maild.t8.aa11bb22cc33dd44ee55ff6677889900@example.com>"),
    # plain text, no delivery-status part, flufl finds nothing: Postfix's "<addr>: why" line
    ("carrier-post_master-re.eml", "ayse.yilmaz@ttmail.example", "5.2.2",
     "<ayse.yilmaz@ttmail.example>: mailbox full, quota exceeded (552 5.2.2)",
     "<maild.t9.0f1e2d3c4b5a46978877665544332211@example.com>"),
])
def test_bounce_details_on_own_dsns(file: str, address: str, status: str,
                                    diagnostic: str | None, original: str) -> None:
    d = bounce_details((MACHINE_DIR / file).read_bytes())
    assert [(r.address, r.status) for r in d.recipients] == [(address, status)]
    assert d.delayed == ()
    if diagnostic is not None:
        assert d.recipients[0].diagnostic == diagnostic
    assert d.original_message_ids == (original,)


def test_bounce_details_delay_is_not_a_failure() -> None:
    d = bounce_details((MACHINE_DIR / "gmail-dsn-delay.eml").read_bytes())
    assert d.recipients == ()
    assert [(r.address, r.status) for r in d.delayed] == [
        ("olivia.hart@kestrel-outdoor.example", "4.4.1")]
    assert d.delayed[0].diagnostic.startswith("smtp; The recipient server did not accept")
    assert d.original_message_ids == ("<maild.t11.5e4d3c2b1a0948f7e6d5c4b3a2918070@example.com>",)


def test_bounce_details_original_id_from_body_then_own_headers() -> None:
    d = bounce_details((MACHINE_DIR / "carrier-post_master-re.eml").read_bytes())
    assert d.original_message_ids == ("<maild.t9.0f1e2d3c4b5a46978877665544332211@example.com>",)
    bare = (b"From: MAILER-DAEMON@mx.example\r\nSubject: failure notice\r\n"
            b"In-Reply-To: <maild.t1.abc@example.com>\r\n\r\nIt failed.\r\n")
    assert bounce_details(bare).original_message_ids == ("<maild.t1.abc@example.com>",)


@pytest.mark.parametrize("data", [b"", b"\x00\xff\xfe garbage", b"Content-Type: multipart/"
                                  b"report; boundary=x\r\n\r\n--x\r\nContent-Type: message/"
                                  b"delivery-status\r\n\r\n\x00\r\n--x--", b"From:\r\n\r\n" * 3])
def test_bounce_details_never_raises(data: bytes) -> None:
    d = bounce_details(data)
    assert d.recipients == () and d.delayed == ()


# --- the MIME facts parse adds --------------------------------------------------------------

def test_part_types_and_attached_do_not_enter_attached_messages() -> None:
    corpus = load_corpus("threading")
    msg = parse_message(corpus.message("13-forward-rfc822.eml").raw)
    assert msg.part_types == ("multipart/mixed", "text/plain", "message/rfc822")
    assert [(a.from_addr, a.subject) for a in msg.attached] == [
        ("contabilidad@lumen-studio.es", "Invoice 2026-113")]
    ndr = parse_message((MACHINE_DIR / "postfix-dsn.eml").read_bytes())
    assert "message/delivery-status" in ndr.part_types
    assert ndr.attached[0].message_id.startswith("<maild.t45.")


def test_headers_only_parse_has_no_mime_facts() -> None:
    from maild.parse import ParseLimits

    data = (MACHINE_DIR / "gmail-dsn.eml").read_bytes()
    msg = parse_message(data, ParseLimits(max_bytes=100))
    assert msg.parse_error and msg.part_types == () and msg.attached == ()
    assert classify(msg, CTX).kind == "bounce"  # report-type= in the Content-Type header
