"""Time-based automations: the difficult-conversation signal, the loader's errors,
firing once per episode on SQLite and PostgreSQL (actions, event, notice mail), and
the dry run (`maild rules test --ticket`, and on a message) saying when."""

from __future__ import annotations

import email
import email.policy
import json
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from maild.app import App, build_app
from maild.cli import main
from maild.clock import FixedClock
from maild.config import load_config
from maild.errors import RuleError
from maild.escalation.loader import collect_automations, load_automations
from maild.escalation.signals import detect
from maild.ingest import IngestItem
from maild.rules import load_rules
from maild.schedule import job_escalation
from maild.store.db import upgrade
from maild.store.models import EscalationState, Event, OutboxRow, Ticket
from tests.builders import raw_mail, utc
from tests.test_replying import REPO, write_config

SHIPPED_RULES = REPO / "maild" / "defaults" / "rules"

ANGRY = ("This is UNACCEPTABLE. I have written three times and my order is still not here. "
         "If I do not hear from you today I will cancel my account and file a chargeback.")
AUTOMATIONS = '''
[[automation]]
name = "angry-waiting"
description = "angry and waiting an hour"
[automation.when]
status = ["new", "open"]
difficult = true
unanswered = ">= 1"
hours_since_customer = 1
[automation.then]
priority = "raise"
tags = ["difficult"]
suggest = ["angry-customer"]
escalate_to = ["lead@example.com"]
assign = "lead@example.com"

[[automation]]
name = "old-unsolved"
[automation.when]
status = ["new", "open", "pending"]
hours_since_created = ">= 48"
[automation.then]
tags = ["old"]
'''


def make_app(tmp: Path, db_url: str, automations: str = AUTOMATIONS) -> App:
    rules = tmp / "rules"
    shutil.copytree(SHIPPED_RULES, rules)
    (rules / "40-escalation.toml").write_text(automations, encoding="utf-8")  # not the shipped
    cfg = write_config(tmp, db_url)
    cfg.write_text(cfg.read_text().replace(f'rules = "{SHIPPED_RULES}"', f'rules = "{rules}"'))
    app = build_app(load_config(cfg), FixedClock(utc(2026, 11, 2, 10)), environ={})
    upgrade(app.engine)
    return app


@pytest.fixture
def app(db_url: str, tmp_path: Path) -> App:
    return make_app(tmp_path, db_url)


_uid = iter(range(1, 10_000))


def feed(app: App, raw: bytes, role: str = "inbox") -> None:
    app.ingestor(app.config.mailboxes[0]).ingest_batch(
        role, "INBOX" if role == "inbox" else "Sent", 1,
        [IngestItem(next(_uid), raw, app.clock.now())])


def later(app: App, **delta: float) -> None:
    app.clock = FixedClock(app.clock.now() + timedelta(**delta))


def escalated(app: App) -> list[Event]:
    with app.sessions() as s:
        return list(s.scalars(select(Event).where(Event.kind == "escalated").order_by(Event.id)))


# --- signals and loading ---------------------------------------------------------------


def test_signals_name_what_they_found() -> None:
    found = detect([ANGRY], "en", contacts_in_a_day=3)
    assert found.kinds == {"anger", "urgency", "threat", "repeated-contacts"}
    assert dict(found.hits)["threat"] == ("cancel my account", "chargeback")
    assert "anger: still not, unacceptable" in found.describe()
    tr = detect(["Rezalet! Kaçıncı kez yazıyorum, aboneliğimi iptal edeceğim."], "tr")
    assert tr.kinds == {"anger", "threat"}
    assert detect(["WHERE IS MY ORDER, NOBODY ANSWERS ME AT ALL"], "en").kinds == {"all-caps"}
    assert detect(["Thanks, could you tell me the opening hours?"], "en").kinds == frozenset()
    assert detect(["I am not angry"], "en").kinds == {"anger"}  # words, not meaning: said so


@pytest.mark.parametrize(("toml", "error"), [
    ('[[automation]]\nname = "x"\n[automation.when]\nstatus = "new"\n', "then: no action"),
    ('[[automation]]\nname = "x"\n[automation.when]\nmood = 1\n[automation.then]\ntags = ["a"]',
     "when.mood: unknown condition"),
    ('[[automation]]\nname = "x"\n[automation.when]\npriority = ">= extreme"\n'
     '[automation.then]\ntags = ["a"]', "when.priority"),
    ('[[automation]]\nname = "x"\n[automation.when]\nstatus = "new"\n[automation.then]\n'
     'suggest = ["nope"]', "unknown macro 'nope'"),
    ('[[automation]]\nname = "x"\n[automation.when]\nsla = "late"\n[automation.then]\n'
     'tags = ["a"]', "when.sla"),
    ('[[automation]]\nname = "x"\n[automation.when]\nstatus = "new"\n[automation.then]\n'
     'escalate_to = ["not an address"]', "then.escalate_to"),
])
def test_loader_errors_name_file_automation_and_field(tmp_path: Path, toml: str,
                                                      error: str) -> None:
    (tmp_path / "50-x.toml").write_text(toml, encoding="utf-8")
    _, errors = collect_automations(tmp_path, {"angry-customer"})
    assert errors and error in str(errors[0]) and '50-x.toml: automation "x" (#1)' in \
        str(errors[0])
    with pytest.raises(RuleError):
        load_automations(tmp_path, {"angry-customer"})


def test_rule_files_with_automations_still_load_as_rules() -> None:
    rules = load_rules(SHIPPED_RULES, sla_policies={"default", "vip"},
                       templates={"eta", "eta-vip"})
    assert rules.rules
    names = [a.name for a in load_automations(SHIPPED_RULES, {"angry-customer"})]
    assert names == ["difficult-conversation", "first-response-breached"]


# --- firing ----------------------------------------------------------------------------


def test_fires_once_per_episode_with_actions_event_and_notice(app: App) -> None:
    feed(app, raw_mail(body=ANGRY))
    assert job_escalation(app) == {"escalated": 0, "episodes_ended": 0}  # not an hour yet
    later(app, minutes=61)
    assert job_escalation(app) == {"escalated": 1, "episodes_ended": 0}
    assert job_escalation(app) == {"escalated": 0, "episodes_ended": 0}  # once
    [ev] = escalated(app)
    assert ev.detail["automation"] == "angry-waiting"
    assert "threat: cancel my account, chargeback" in ev.detail["signals"]
    assert ev.detail["notified"] == ["lead@example.com"]
    with app.sessions() as s:
        t = s.get_one(Ticket, 1)
        assert t.priority == "high" and "difficult" in t.tags
        assert t.assignee == "lead@example.com"
        assert t.suggestions[0]["name"] == "angry-customer"
        [raw] = s.scalars(select(OutboxRow.raw).where(OutboxRow.kind == "escalation")).all()
    notice = email.message_from_bytes(raw, policy=email.policy.default)
    assert notice["To"] == "lead@example.com" and notice["Auto-Submitted"] == "auto-generated"
    assert "maild reply 1 --macro angry-customer" in notice.get_body().get_content()  # type: ignore[union-attr]
    # an agent answers: the episode ends; the customer writes angrily again: a new one
    feed(app, raw_mail(frm="Ayse <support@example.com>", to="ann@example.org",
                       subject="Re: Order missing [#1]", msgid="<r1@example.com>",
                       body="We are on it."), role="sent")
    assert job_escalation(app) == {"escalated": 0, "episodes_ended": 1}
    later(app, minutes=10)
    feed(app, raw_mail(msgid="<m2@example.org>", subject="Re: Order missing [#1]",
                       body="Still nothing. This is ridiculous."))
    later(app, minutes=61)
    assert job_escalation(app)["escalated"] == 1
    with app.sessions() as s:
        state = s.scalars(select(EscalationState)).one()
        assert state.times == 2 and state.cleared_at is None
        assert s.get_one(Ticket, 1).priority == "urgent"  # raised one step more


def test_time_condition_and_solved_tickets(app: App) -> None:
    feed(app, raw_mail(body="Could you send me the invoice?"))
    later(app, hours=47)
    assert job_escalation(app) == {"escalated": 0, "episodes_ended": 0}
    later(app, hours=1)
    assert job_escalation(app)["escalated"] == 1
    assert [e.detail["automation"] for e in escalated(app)] == ["old-unsolved"]


def test_history_is_not_escalated_until_its_customer_writes_again(app: App) -> None:
    """Issue 17: a first run imports years of old tickets; the automations must not
    raise, tag and mail about them (they fire only on what happened since maild began,
    less `autoreply.max_age_hours`)."""
    feed(app, raw_mail(frm="Bob <bob@example.org>", msgid="<live@example.org>",
                       subject="Invoice", body="Could you send me the invoice?"))
    old = app.clock.now() - timedelta(days=30)  # history: before the first run less 24 h
    app.ingestor(app.config.mailboxes[0]).ingest_batch(
        "inbox", "INBOX", 1, [IngestItem(next(_uid), raw_mail(
            msgid="<old@example.org>", body="Could you send me the invoice?"), old)],
        lane="prefetch")
    later(app, hours=48)
    assert job_escalation(app)["escalated"] == 1
    with app.sessions() as s:
        [bob] = s.scalars(select(Ticket.id).join(Ticket.customer).where(
            Ticket.subject == "Invoice")).all()
    assert [e.ticket_id for e in escalated(app)] == [bob]
    from maild.dryrun import dry_run_ticket
    old_ticket = next(t for t in (1, 2) if t != bob)
    found = dry_run_ticket(app, old_ticket)
    assert found["history"] and all(a["fires_at"] is None for a in found["automations"])
    assert not dry_run_ticket(app, bob)["history"]
    # the old ticket's customer writes again: it is live mail now, and is escalated
    feed(app, raw_mail(msgid="<again@example.org>", subject="Re: Order missing",
                       in_reply_to="<old@example.org>", body="Any news?"))
    later(app, hours=1)
    assert job_escalation(app)["escalated"] == 1
    assert len(escalated(app)) == 2


def test_rules_test_says_which_would_fire_and_when(app: App, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    cfg = str(app.config.path)
    eml = tmp_path / "angry.eml"
    eml.write_bytes(raw_mail(body=ANGRY))
    assert main(["--config", cfg, "rules", "test", str(eml), "--now",
                 "2026-11-02T10:00:00Z", "--json"]) == 0
    autos = {a["automation"]: a for a in json.loads(capsys.readouterr().out)["automations"]}
    assert autos["angry-waiting"]["fires_at"] == "2026-11-02T11:00:00+00:00"
    assert autos["old-unsolved"]["fires_at"] == "2026-11-04T10:00:00+00:00"
    feed(app, raw_mail(body=ANGRY))
    later(app, minutes=61)
    job_escalation(app)
    with app.sessions() as s:  # on PostgreSQL the dry run above used up ticket number 1
        tid = s.scalars(select(Ticket.id)).one()
    assert main(["--config", cfg, "rules", "test", "--ticket", str(tid), "--now",
                 "2026-11-02T11:01:00Z"]) == 0
    shown = capsys.readouterr().out
    assert "automation angry-waiting: fired already (this episode)" in shown
    assert "automation old-unsolved: fires at 2026-11-04T10:00:00+00:00" in shown
    assert main(["--config", cfg, "rules", "test", "--ticket", "99"]) == 2
    assert main(["--config", cfg, "rules", "test"]) == 2


def test_every_word_list_entry_is_in_the_docs() -> None:
    from maild.escalation import words

    text = (REPO / "docs" / "rules.md").read_text(encoding="utf-8")
    missing = [f"{kind}/{lang}: {e}" for kind, table in words.KINDS.items()
               for lang, entries in table.items() for e in entries if f"`{e}`" not in text]
    assert missing == [], f"docs/rules.md lacks word list entries: {missing}"


def test_without_signal_conditions_the_text_is_not_read(db_url: str, tmp_path: Path) -> None:
    app = make_app(tmp_path, db_url, '''
[[automation]]
name = "two-unanswered"
[automation.when]
unanswered = ">= 2"
[automation.then]
priority = "high"
''')
    assert [a.name for a in app.automation().timed] == ["two-unanswered"]
    feed(app, raw_mail(body=ANGRY))
    assert job_escalation(app) == {"escalated": 0, "episodes_ended": 0}
    feed(app, raw_mail(msgid="<m2@example.org>", subject="Re: Order missing [#1]",
                       body="Hello?"))
    assert job_escalation(app)["escalated"] == 1
    [ev] = escalated(app)
    assert ev.detail["signals"] == [] and ev.detail["done"] == ["priority high"]
