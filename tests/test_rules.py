"""Rules: the example files, every condition kind, evaluation semantics, load errors."""

from __future__ import annotations

import json
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from maild.errors import RuleError
from maild.parse import Address, ParsedMessage
from maild.rules import (
    Decision,
    MessageFacts,
    RuleDefaults,
    RuleSet,
    load_rules,
    rule_files,
    validate_all,
)

RULES_DIR = Path(__file__).resolve().parent.parent / "maild" / "defaults" / "rules"
SLA = {"default", "vip"}
TEMPLATES = {"eta", "eta-vip"}
MACROS = {
    "greeting",
    "request-details",
    "refund-policy",
    "password-reset",
    "bug-acknowledged",
    "resolved",
    "angry-customer",
}


def message(
    subject: str = "Question",
    text: str = "Hello, I have a question about my account settings.",
    from_addr: str = "jane@customer.example",
    to: tuple[str, ...] = ("support@example.com",),
    cc: tuple[str, ...] = (),
    headers: tuple[tuple[str, str], ...] = (),
) -> ParsedMessage:
    return ParsedMessage(
        message_id="<m1@customer.example>",
        subject=subject,
        from_addr=from_addr,
        to=tuple(Address("", a) for a in to),
        cc=tuple(Address("", a) for a in cc),
        text=text,
        headers=headers,
    )


def facts(
    msg: ParsedMessage | None = None,
    *,
    language: str | None = "en",
    mailbox: str = "support@example.com",
    new: bool = True,
    previous: int = 0,
    business_hours: bool = True,
) -> MessageFacts:
    return MessageFacts(
        message=msg or message(),
        mailbox=mailbox,
        is_new_ticket=new,
        previous_tickets=previous,
        in_business_hours=business_hours,
        language=language,
    )


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def ruleset(tmp_path: Path, text: str, macros: set[str] | None = MACROS) -> RuleSet:
    write(tmp_path / "rules", "10-test.toml", text)
    return load_rules(tmp_path / "rules", sla_policies=SLA, templates=TEMPLATES, macros=macros)


def examples() -> RuleSet:
    return load_rules(RULES_DIR, sla_policies=SLA, templates=TEMPLATES, macros=MACROS)


# --- the example rule files -------------------------------------------------------


def test_example_rules_load_in_file_order() -> None:
    assert [p.name for p in rule_files(RULES_DIR)] == [
        "10-spam.toml",
        "20-priority.toml",
        "30-vip.toml",
        "40-escalation.toml",  # [[automation]] tables only (maild.escalation)
    ]
    names = examples().names
    assert names[0] == "spam-subjects"
    assert names[-1] == "vip-urgent"
    assert validate_all(RULES_DIR, sla_policies=SLA, templates=TEMPLATES, macros=MACROS) == []


def test_example_spam_stops_and_silences() -> None:
    decision = examples().evaluate(facts(message(subject="URGENT: You have won the lottery!")))
    assert decision.matched == ("spam-subjects",)
    assert decision.spam is True
    assert decision.auto_reply is False
    assert decision.tags == ("spam",)


def test_example_turkish_refund_from_vip() -> None:
    msg = message(subject="İADE talebi - acil", from_addr="cfo@finance.bigcorp.com")
    decision = examples().evaluate(facts(msg, language="tr", previous=3))
    assert decision.matched == (
        "urgent-words",
        "refunds",
        "turkish-queue",
        "vip-customers",
        "vip-urgent",
    )
    assert decision.priority == "urgent"
    assert decision.sla_policy == "vip"
    assert decision.auto_reply is True
    assert decision.auto_reply_template == "eta-vip"
    assert decision.tags == ("urgent", "billing", "refund", "lang-tr", "vip")
    assert decision.suggest == ("refund-policy",)


def test_example_password_reset_first_time_after_hours() -> None:
    msg = message(subject="Giriş", text="Merhaba, şifremi unuttum, giriş yapamıyorum.")
    decision = examples().evaluate(facts(msg, language="tr", business_hours=False))
    assert decision.matched == (
        "password-reset",
        "first-time-customer",
        "turkish-queue",
        "after-hours",
    )
    assert decision.suggest == ("password-reset", "greeting")
    assert decision.priority == "normal"
    assert decision.auto_reply_template == "eta"


def test_example_vip_reply_gets_no_auto_reply() -> None:
    msg = message(subject="Re: [#42] Invoice", from_addr="ceo@bigcorp.com")
    decision = examples().evaluate(facts(msg, new=False, previous=5))
    assert "vip-customers" in decision.matched
    assert decision.auto_reply is False


def test_example_thunderbird_high_importance() -> None:
    msg = message(headers=(("X-Priority", "1 (Highest)"),))
    assert examples().evaluate(facts(msg)).priority == "high"


# --- each condition kind ------------------------------------------------------------


def one_condition(tmp_path: Path, when: str) -> RuleSet:
    return ruleset(
        tmp_path, f'[[rule]]\nname = "r"\n[rule.when]\n{when}\n[rule.then]\ntags = ["hit"]\n'
    )


CONDITION_CASES = [
    ('from = ["*@bigcorp.com", "ceo@x.org"]', facts(message(from_addr="ann@bigcorp.com")), True),
    ('from = ["*@bigcorp.com", "ceo@x.org"]', facts(message(from_addr="CEO@X.org")), True),
    ('from = ["*@bigcorp.com"]', facts(message(from_addr="ann@notbigcorp.com.evil")), False),
    ('from = "ceo@x.org"', facts(message(from_addr="ceo@x.org")), True),
    ('from_domain = ["bigcorp.com"]', facts(message(from_addr="a@bigcorp.com")), True),
    ('from_domain = ["bigcorp.com"]', facts(message(from_addr="a@eu.bigcorp.com")), True),
    ('from_domain = ["bigcorp.com"]', facts(message(from_addr="a@notbigcorp.com")), False),
    ('from_domain = ["bigcorp.com"]', facts(message(from_addr="")), False),
    ('to = ["billing@example.com"]', facts(message(to=("billing@example.com",))), True),
    ('to = ["billing@*"]', facts(message(cc=("billing@example.com",))), True),
    ('to = ["billing@example.com"]', facts(message()), False),
    ('subject = "(?i)refund|iade"', facts(message(subject="Re: İade")), True),
    ('subject = "(?i)refund|iade"', facts(message(subject="Shipping")), False),
    ('body = "(?i)password"', facts(message(text="I lost my PASSWORD")), True),
    ('body = "(?i)password"', facts(message(subject="password", text="hi")), False),
    ('header = { "X-Priority" = "1" }', facts(message(headers=(("x-priority", "1"),))), True),
    ('header = { "X-Priority" = "1" }', facts(message(headers=(("X-Priority", "3"),))), False),
    ('header = { "X-Mailer" = "*" }', facts(message(headers=(("X-Mailer", "Foo"),))), True),
    ('header = { "X-Mailer" = "*" }', facts(message()), False),
    ('header = { "X-A" = "yes", "X-B" = "*" }', facts(message(headers=(("X-A", "YES"),))), False),
    ('language = ["tr"]', facts(language="tr"), True),
    ('language = ["tr", "az"]', facts(language="en"), False),
    ('language = ["tr"]', facts(language=None), False),
    ('mailbox = ["support@example.com"]', facts(mailbox="Support@Example.com"), True),
    ('mailbox = ["sales@*"]', facts(), False),
    ('ticket = "new"', facts(new=True), True),
    ('ticket = "new"', facts(new=False), False),
    ('ticket = "reply"', facts(new=False), True),
    ('ticket = "any"', facts(new=False), True),
    ('previous_tickets = ">= 3"', facts(previous=3), True),
    ('previous_tickets = ">= 3"', facts(previous=2), False),
    ('previous_tickets = "<3"', facts(previous=2), True),
    ('previous_tickets = "> 0"', facts(previous=0), False),
    ('previous_tickets = "== 0"', facts(previous=0), True),
    ('previous_tickets = "<= 1"', facts(previous=1), True),
    ('previous_tickets = "!= 1"', facts(previous=1), False),
    ("previous_tickets = 2", facts(previous=2), True),
    ("business_hours = true", facts(business_hours=True), True),
    ("business_hours = false", facts(business_hours=True), False),
    ("business_hours = false", facts(business_hours=False), True),
]


@pytest.mark.parametrize(("when", "the_facts", "hit"), CONDITION_CASES)
def test_condition(tmp_path: Path, when: str, the_facts: MessageFacts, hit: bool) -> None:
    decision = one_condition(tmp_path, when).evaluate(the_facts)
    assert decision.matched == (("r",) if hit else ())


def test_conditions_are_anded_and_absent_when_always_matches(tmp_path: Path) -> None:
    rules = ruleset(
        tmp_path,
        """
        [[rule]]
        name = "both"
        [rule.when]
        subject = "(?i)refund"
        language = ["tr"]

        [[rule]]
        name = "always"
        """,
    )
    refund = message(subject="Refund")
    assert rules.evaluate(facts(refund, language="tr")).matched == ("both", "always")
    assert rules.evaluate(facts(refund, language="en")).matched == ("always",)


# --- evaluation semantics -----------------------------------------------------------

SEMANTICS = """
[[rule]]
name = "first"
[rule.then]
priority = "high"
sla = "vip"
tags = ["a", "b"]
suggest = ["greeting", "refund-policy"]

[[rule]]
name = "never"
[rule.when]
subject = "nothing-matches-this"
[rule.then]
priority = "low"
tags = ["never"]

[[rule]]
name = "second"
[rule.then]
priority = "urgent"
tags = ["b", "c"]
suggest = ["refund-policy", "resolved"]
auto_reply_template = "eta-vip"

[[rule]]
name = "stopper"
stop = true
[rule.when]
subject = "(?i)stop"
[rule.then]
tags = ["stopped"]

[[rule]]
name = "after-stop"
[rule.then]
priority = "low"
"""


def test_override_accumulate_and_order(tmp_path: Path) -> None:
    decision = ruleset(tmp_path, SEMANTICS).evaluate(facts())
    assert decision.matched == ("first", "second", "after-stop")
    assert decision.priority == "low"
    assert decision.sla_policy == "vip"
    assert decision.tags == ("a", "b", "c")
    assert decision.suggest == ("greeting", "refund-policy", "resolved")
    assert decision.auto_reply_template == "eta-vip"
    assert decision.source_of("priority") == "after-stop"
    assert decision.source_of("sla_policy") == "first"
    assert decision.source_of("auto_reply") == "default"


def test_stop_ends_evaluation(tmp_path: Path) -> None:
    decision = ruleset(tmp_path, SEMANTICS).evaluate(facts(message(subject="Please STOP")))
    assert decision.matched == ("first", "second", "stopper")
    assert decision.priority == "urgent"
    assert decision.tags == ("a", "b", "c", "stopped")


def test_no_rules_gives_defaults() -> None:
    decision = RuleSet().evaluate(facts())
    assert decision == Decision(
        matched=(),
        priority="normal",
        tags=(),
        sla_policy="default",
        auto_reply=True,
        auto_reply_template="eta",
        suggest=(),
        spam=False,
        ignore=False,
    )
    custom = RuleDefaults(priority="low", sla_policy="vip", auto_reply_template="eta-vip")
    assert RuleSet(defaults=custom).evaluate(facts()).priority == "low"
    assert RuleSet().evaluate(facts(), defaults=custom).sla_policy == "vip"
    off = RuleDefaults(auto_reply_new_tickets=False)
    assert RuleSet().evaluate(facts(), defaults=off).auto_reply is False


AUTO_REPLY_RULES = """
[[rule]]
name = "plain-on"
[rule.when]
subject = "plain"
[rule.then]
auto_reply = true

[[rule]]
name = "replies-on"
[rule.when]
subject = "replies"
ticket = "reply"
[rule.then]
auto_reply = true

[[rule]]
name = "any-on"
[rule.when]
subject = "any"
ticket = "any"
[rule.then]
auto_reply = true

[[rule]]
name = "off"
[rule.when]
subject = "quiet"
[rule.then]
auto_reply = false

[[rule]]
name = "spam"
[rule.when]
subject = "spam"
[rule.then]
spam = true

[[rule]]
name = "ignore"
[rule.when]
subject = "ignore"
[rule.then]
ignore = true

[[rule]]
name = "unspam"
[rule.when]
subject = "unspam"
[rule.then]
spam = false
"""


@pytest.mark.parametrize(
    ("subject", "new", "auto_reply"),
    [
        ("hello", True, True),  # default: new tickets get the ETA reply
        ("hello", False, False),  # default: replies never do
        ("plain", False, False),  # auto_reply = true without ticket opt-in: new tickets only
        ("plain", True, True),
        ("replies", False, True),  # ticket = "reply" opts replies in
        ("any", False, True),
        ("quiet", True, False),
        ("spam", True, False),
        ("ignore", True, False),
        ("any spam", False, False),  # spam forces it off even after an opt-in
        ("spam unspam", True, True),  # a later spam = false clears the flag
    ],
)
def test_auto_reply_semantics(tmp_path: Path, subject: str, new: bool, auto_reply: bool) -> None:
    decision = ruleset(tmp_path, AUTO_REPLY_RULES).evaluate(facts(message(subject), new=new))
    assert decision.auto_reply is auto_reply


def test_spam_and_ignore_flags(tmp_path: Path) -> None:
    rules = ruleset(tmp_path, AUTO_REPLY_RULES)
    spam = rules.evaluate(facts(message("spam")))
    assert (spam.spam, spam.ignore) == (True, False)
    ignored = rules.evaluate(facts(message("ignore")))
    assert (ignored.spam, ignored.ignore) == (False, True)


def test_actions_and_as_dict_are_json_ready(tmp_path: Path) -> None:
    decision = ruleset(tmp_path, SEMANTICS).evaluate(facts())
    actions = decision.actions()
    assert [a["action"] for a in actions] == [
        "set_priority",
        "set_sla_policy",
        "add_tags",
        "auto_reply",
        "suggest_macros",
    ]
    assert actions[0] == {"action": "set_priority", "value": "low", "rule": "after-stop"}
    assert actions[3] == {"action": "auto_reply", "template": "eta-vip", "rule": "default"}
    data = json.loads(json.dumps(decision.as_dict()))
    assert data["matched"] == ["first", "second", "after-stop"]
    assert data["set_by"]["sla_policy"] == "first"
    assert data["actions"] == actions
    spam = ruleset(tmp_path, AUTO_REPLY_RULES).evaluate(facts(message("spam")))
    assert spam.actions()[0] == {"action": "mark_spam", "rule": "spam"}
    assert "auto_reply" not in [a["action"] for a in spam.actions()]


def test_evaluate_is_pure(tmp_path: Path) -> None:
    rules = ruleset(tmp_path, SEMANTICS)
    the_facts = facts()
    assert rules.evaluate(the_facts) == rules.evaluate(replace(the_facts))


# --- loading errors -----------------------------------------------------------------


def when(line: str) -> str:
    return f'[[rule]]\nname = "r"\n[rule.when]\n{line}\n'


def then(line: str) -> str:
    return f'[[rule]]\nname = "r"\n[rule.then]\n{line}\n'


BROKEN = [
    (
        '[[rule]]\nname = "ok"\n[[rule]]\nname = "refund"\n[rule.when]\nsubject = "[unclosed"\n',
        'rule "refund" (#2): when.subject: invalid regex: unterminated character set at position 0',
    ),
    (when('subjet = "x"'), "when.subjet: unknown condition (did you mean 'subject'?)"),
    (then('priorty = "high"'), 'rule "r" (#1): then.priorty: unknown action'),
    ('[[rule]]\nname = "r"\nstpo = true\n', 'rule "r" (#1): stpo: unknown key'),
    ('[[rule]]\nname = "r"\nstop = "yes"\n', 'rule "r" (#1): stop: expected true or false'),
    ('[[rule]]\ndescription = "x"\n', "rule #1: name: missing"),
    ('[[rule]]\nname = "Bad Name"\n', "rule #1: name: must match [a-z0-9-]+"),
    ("[[rule]]\nname = 7\n", "rule #1: name: must match [a-z0-9-]+, got 7"),
    (then('priority = "critical"'), "then.priority: expected one of low, normal, high, urgent"),
    (then('sla = "gold"'), "then.sla: unknown SLA policy 'gold' (known: default, vip)"),
    (then('auto_reply_template = "eta2"'), "then.auto_reply_template: unknown template 'eta2'"),
    (then('suggest = ["refund"]'), "then.suggest: unknown macro 'refund'"),
    (then('auto_reply = "yes"'), "then.auto_reply: expected true or false, got string"),
    (then("tags = []"), "then.tags: must not be an empty array"),
    (then('tags = ["two words"]'), "then.tags: not a tag"),
    (
        then("spam = true\nauto_reply = true"),
        "then.auto_reply: cannot be true in a rule that sets spam or ignore",
    ),
    (when("from = [1]"), "when.from: item 1: expected a non-empty string, got 1"),
    (when('from_domain = ["a@b.com"]'), "when.from_domain: not a domain: 'a@b.com'"),
    (when('header = "X-Priority"'), "when.header: expected a table, got string"),
    (when('header = { "X-Priority" = 1 }'), "when.header: X-Priority: expected a string"),
    (when('language = ["turkish"]'), "when.language: not an ISO 639-1 language code"),
    (when('ticket = "old"'), "when.ticket: expected one of new, reply, any, got 'old'"),
    (when('previous_tickets = "at least 3"'), "when.previous_tickets: expected a comparison"),
    (when("previous_tickets = true"), "when.previous_tickets: expected a string, got boolean"),
    (when('business_hours = "yes"'), "when.business_hours: expected true or false, got string"),
    ('[[rule]]\nname = "r"\nwhen = "always"\n', 'rule "r" (#1): when: expected a table'),
    ('[[rule]]\nname = "r"\n[[rule]]\nname = "r"\n', 'rule "r" (#2): name: duplicate rule name'),
    ("[rule]\nname = 'r'\n", "rule: expected an array of tables ([[rule]])"),
    ("[rules]\nname = 'r'\n", "rules: unknown top-level key (did you mean 'rule'?)"),
    ('[[rule]]\nname = "r\n', "invalid TOML: "),
]


@pytest.mark.parametrize(("snippet", "expected"), BROKEN)
def test_each_error_is_one_line_naming_file_rule_and_field(
    tmp_path: Path, snippet: str, expected: str
) -> None:
    path = write(tmp_path / "rules", "10-billing.toml", snippet)
    with pytest.raises(RuleError) as info:
        load_rules(tmp_path / "rules", sla_policies=SLA, templates=TEMPLATES, macros=MACROS)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"{path}: ")
    assert expected in text


def test_error_example_from_the_docs(tmp_path: Path) -> None:
    write(tmp_path / "rules", "10-billing.toml", BROKEN[0][0])
    with pytest.raises(RuleError) as info:
        load_rules(Path(tmp_path / "rules"), sla_policies=SLA, templates=TEMPLATES)
    assert str(info.value) == (
        f'{tmp_path}/rules/10-billing.toml: rule "refund" (#2): when.subject: '
        "invalid regex: unterminated character set at position 0"
    )


def test_macros_none_skips_the_macro_check(tmp_path: Path) -> None:
    rules = ruleset(tmp_path, '[[rule]]\nname = "r"\n[rule.then]\nsuggest = ["anything"]\n', None)
    assert rules.evaluate(facts()).suggest == ("anything",)


def test_duplicate_names_across_files(tmp_path: Path) -> None:
    first = write(tmp_path / "rules", "10-a.toml", '[[rule]]\nname = "x"\n')
    second = write(tmp_path / "rules", "20-b.toml", '[[rule]]\nname = "y"\n[[rule]]\nname = "x"\n')
    errors = validate_all(tmp_path / "rules", sla_policies=SLA, templates=TEMPLATES)
    assert [str(e) for e in errors] == [
        f'{second}: rule "x" (#2): name: duplicate rule name, first defined in {first} (#1)'
    ]


def test_validate_all_collects_every_error(tmp_path: Path) -> None:
    directory = tmp_path / "rules"
    write(
        directory,
        "10-one.toml",
        """
        [[rule]]
        name = "a"
        [rule.when]
        subject = "("
        body = "["
        [rule.then]
        sla = "gold"

        [[rule]]
        name = "fine"
        """,
    )
    write(directory, "20-two.toml", '[[rule]]\nname = "b"\n[rule.then]\npriority = "meh"\n')
    write(directory, "30-three.toml", "this is not toml\n")
    write(directory, "notes.txt", "ignored: not a .toml file\n")
    write(directory, ".hidden.toml", "ignored: dot-file\n")
    errors = validate_all(directory, sla_policies=SLA, templates=TEMPLATES, macros=MACROS)
    fields = [str(e).split(": ")[2] if "rule" in str(e) else str(e) for e in errors]
    assert len(errors) == 5, errors
    assert fields[:4] == ["when.subject", "when.body", "then.sla", "then.priority"]
    assert "30-three.toml: invalid TOML" in str(errors[4])
    assert all(isinstance(e, RuleError) and "\n" not in str(e) for e in errors)
    with pytest.raises(RuleError) as info:
        load_rules(directory, sla_policies=SLA, templates=TEMPLATES, macros=MACROS)
    assert str(info.value) == str(errors[0])


def test_missing_directory_and_bad_defaults(tmp_path: Path) -> None:
    errors = validate_all(
        tmp_path / "nope",
        sla_policies=SLA,
        templates=TEMPLATES,
        defaults=RuleDefaults(sla_policy="gold", auto_reply_template="x"),
    )
    assert [str(e) for e in errors] == [
        "rule defaults: sla_policy: unknown SLA policy 'gold' (known: default, vip)",
        "rule defaults: auto_reply_template: unknown template 'x' (known: eta, eta-vip)",
        f"{tmp_path / 'nope'}: rules directory not found",
    ]


def test_empty_directory_is_an_empty_ruleset(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    rules = load_rules(tmp_path / "rules", sla_policies=SLA, templates=TEMPLATES)
    assert rules.names == ()
    assert rules.evaluate(facts()).auto_reply is True
