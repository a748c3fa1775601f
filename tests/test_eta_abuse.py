"""ETA replies cannot be aimed at addresses of a forger's choosing: a Reply-To at
another domain than From needs the trusted server's word for From, and replies
per recipient domain are capped as well as per address and in all."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from maild.app import App, build_app
from maild.automation import plan_message
from maild.clock import FixedClock
from maild.config import load_config
from maild.errors import ConfigError
from maild.ingest import IngestItem
from maild.parse import parse_message
from maild.store.db import upgrade
from maild.store.models import Event, OutboxRow
from tests.builders import authenticated, raw_mail, utc
from tests.test_replying import write_config

NOW = utc(2026, 11, 2, 10)
_uids = iter(range(1, 10_000))


def make_app(db_url: str, tmp_path: Path, per_domain: int | None = 2) -> App:
    config = write_config(tmp_path, db_url)
    if per_domain is not None:
        config.write_text(config.read_text().replace(
            'company = "Example Ltd"',
            f'company = "Example Ltd"\nper_domain_per_hour = {per_domain}'))
    built = build_app(load_config(config), FixedClock(NOW), environ={})
    upgrade(built.engine)
    return built


@pytest.fixture
def app(db_url: str, tmp_path: Path) -> App:
    return make_app(db_url, tmp_path)


def ingest(app: App, raw: bytes) -> None:
    app.ingestor(app.config.mailboxes[0]).ingest_batch(
        "inbox", "INBOX", 1, [IngestItem(next(_uids), raw, app.clock.now())])


def mail(frm: str, n: int, reply_to: str | None = None) -> bytes:
    return raw_mail(frm=frm, msgid=f"<e{n}@x.example>", subject=f"Question {n}",
                    extra=f"Reply-To: <{reply_to}>" if reply_to else "")


def etas(app: App) -> list[str]:
    with app.sessions() as s:
        return list(s.scalars(select(OutboxRow.recipient).where(OutboxRow.kind == "auto_reply")
                              .order_by(OutboxRow.id)))


def suppressed(app: App) -> list[str]:
    with app.sessions() as s:
        rows = s.scalars(select(Event).where(Event.kind == "auto_reply_suppressed")
                         .order_by(Event.id))
        return [e.detail["reason"] for e in rows]


def test_reply_to_at_another_domain_without_authentication_gets_no_eta(app: App) -> None:
    ingest(app, mail("Ann <ann@example.org>", 1, reply_to="victim@elsewhere.example"))
    assert etas(app) == []
    [reason] = suppressed(app)
    assert reason.startswith("reply-to-unauthenticated (Reply-To at elsewhere.example, "
                             "From at example.org")


def test_reply_to_at_another_domain_with_the_trusted_servers_pass_gets_the_eta(
        app: App) -> None:
    raw = authenticated(mail("Ann <ann@example.org>", 1, reply_to="ann@elsewhere.example"),
                        "example.org")
    ingest(app, raw)
    assert etas(app) == ["ann@elsewhere.example"] and suppressed(app) == []


def test_a_pass_from_an_untrusted_server_or_for_another_domain_is_not_enough(
        app: App) -> None:
    other_server = authenticated(mail("Ann <ann@example.org>", 1, reply_to="v@else.example"),
                                 "example.org", authserv_id="mx.attacker.example")
    wrong_domain = authenticated(mail("Bo <bo@example.org>", 2, reply_to="w@else.example"),
                                 "else.example")
    ingest(app, other_server)
    ingest(app, wrong_domain)
    assert etas(app) == []
    assert [r.split(" (")[0] for r in suppressed(app)] == ["reply-to-unauthenticated"] * 2


@pytest.mark.parametrize("reply_to", ["ann.private@example.org", "ann@eu.example.org"])
def test_reply_to_at_the_same_domain_needs_no_authentication(app: App, reply_to: str) -> None:
    ingest(app, mail("Ann <ann@example.org>", 1, reply_to=reply_to))
    assert etas(app) == [reply_to]


def test_replies_per_recipient_domain_are_capped(app: App) -> None:
    for n, who in enumerate(["a@victim.example", "b@victim.example", "c@victim.example",
                             "d@other.example"]):
        ingest(app, mail(who, n))
    assert etas(app) == ["a@victim.example", "b@victim.example", "d@other.example"]
    assert suppressed(app) == ["rate-limit-domain (2 per hour to victim.example)"]
    assert isinstance(app.clock, FixedClock)
    app.clock.set(NOW + timedelta(hours=1, minutes=1))  # the hour has passed
    ingest(app, mail("e@victim.example", 9))
    assert etas(app)[-1] == "e@victim.example"


def test_domain_cap_counts_reply_to_addresses(app: App) -> None:
    """The cap is on where replies go: the Reply-To's domain, not From's."""
    for n in range(3):
        raw = authenticated(mail(f"s{n}@sender{n}.example", n, reply_to=f"r{n}@victim.example"),
                            f"sender{n}.example")
        ingest(app, raw)
    assert etas(app) == ["r0@victim.example", "r1@victim.example"]
    assert suppressed(app) == ["rate-limit-domain (2 per hour to victim.example)"]


def test_zero_turns_the_domain_cap_off(db_url: str, tmp_path: Path) -> None:
    app = make_app(db_url, tmp_path, per_domain=0)
    for n in range(4):
        ingest(app, mail(f"p{n}@victim.example", n))
    assert len(etas(app)) == 4


def test_domain_cap_default_and_validation(db_url: str, tmp_path: Path) -> None:
    assert make_app(db_url, tmp_path, per_domain=None).config.autoreply.per_domain_per_hour == 30
    with pytest.raises(ConfigError, match="autoreply.per_domain_per_hour"):
        make_app(db_url, tmp_path, per_domain=-1)


def test_dry_run_plan_gives_the_same_reason(app: App) -> None:
    """`maild rules test` prints plan_message's verdict: the Reply-To rule is in it."""
    parsed = parse_message(mail("Ann <ann@example.org>", 1, reply_to="v@elsewhere.example"))
    plan = plan_message(app.automation(), parsed, mailbox="support@example.com", is_new=True,
                        previous_tickets=0, arrived_at=NOW, now=NOW, suggest=False)
    assert not plan.auto_reply and plan.skip_reason is not None
    assert plan.skip_reason.startswith("reply-to-unauthenticated")
