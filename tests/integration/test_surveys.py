"""CSAT round trip against real Dovecot and the SMTP sink: a ticket solved with
`maild reply --send` gets the survey at the sink after the reply; the customer's
click on the score-4 link (its mailto: subject) is delivered into the support
INBOX; maild records a `csat` event, keeps the ticket solved and mails nothing back."""

from __future__ import annotations

import email
import email.policy
import re
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import unquote

import pytest

from devstack.dovecot import DovecotServer, ImapAccount
from devstack.smtpsink import SmtpSink
from tests.integration.stack import (
    cli_json,
    run_maild,
    show_json,
    write_config,
)
from tests.integration.test_autoreply import customer_mail

pytestmark = pytest.mark.integration


def _parsed(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def test_survey_out_and_answer_back(dovecot: DovecotServer, imap_account: ImapAccount,
                                    db_url: str, smtp_sink: SmtpSink, tmp_path: Path) -> None:
    customer = dovecot.create_account(prefix="customer", domain="example.org")
    dovecot.deliver(imap_account.address, customer_mail(
        f"Ann <{customer.address}>", imap_account.address, "Cannot log in", "<s1@example.org>",
        body="Hello, the password reset link never arrives. Can you help?"))
    config = write_config(tmp_path, imap_account, db_url, smtp_sink)
    run_maild(config, imap_account, "db", "upgrade")
    cli_json(config, imap_account, "run", "--once")  # ticket #1 and its ETA reply
    smtp_sink.wait_for(1)
    cli_json(config, imap_account, "reply", "1", "--macro", "resolved", "--send")
    cli_json(config, imap_account, "run", "--once")  # the reply goes out (and to Sent)
    smtp_sink.wait_for(2)
    cli_json(config, imap_account, "run", "--once")  # its Sent copy is read: the survey
    sent = smtp_sink.wait_for(3)
    surveys = [_parsed(m.raw) for m in sent if b"How did we do?" in m.raw]
    assert len(surveys) == 1 and len(sent) == 3
    survey = surveys[0]
    assert survey["To"].addresses[0].addr_spec == customer.address
    assert survey["Auto-Submitted"] == "auto-replied" and "[#1]" in survey["Subject"]
    body = survey.get_body(("plain",))
    assert body is not None
    links = {unquote(u.split("?subject=", 1)[1]): u
             for u in re.findall(r"mailto:\S+", body.get_content())}
    assert len([s for s in links if re.search(r"\bcsat=[1-5]\b", s)]) == 5
    [four] = [s for s in links if "csat=4" in s.split()]
    assert links[four].startswith(f"mailto:{imap_account.address}?")
    # the customer clicks "4" and sends the mail their client opens (with a comment)
    dovecot.deliver(imap_account.address, customer_mail(
        f"Ann <{customer.address}>", imap_account.address, four, "<s2@example.org>",
        body="Fixed in minutes, thanks!"))
    out = cli_json(config, imap_account, "run", "--once")
    assert out["stored"] == 1 and out["sent"] == 0  # recorded, and nothing mailed back
    ticket = show_json(config, imap_account, 1)
    [csat] = [e for e in ticket["events"] if e["kind"] == "csat"]
    assert csat["score"] == 4 and csat["comment"] == "Fixed in minutes, thanks!"
    assert ticket["status"] == "solved"
    assert not [e for e in ticket["events"] if e["kind"] in ("reopened", "survey_ignored")]
    answer = [m for m in ticket["messages"] if m["message_id"] == "<s2@example.org>"]
    assert answer and answer[0]["auto"] is True  # not a customer follow-up
    assert len(smtp_sink.messages) == 3
    stats = cli_json(config, imap_account, "stats", "--since", "2000-01-01",
                     "--until", "2100-01-01")
    assert stats["csat"]["responses"] == 1 and stats["csat"]["satisfied_pct"] == 1.0
    assert stats["csat"]["response_rate"] == 1.0
