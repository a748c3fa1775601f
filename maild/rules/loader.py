"""Load `rules/*.toml` into a `RuleSet`, or list every mistake in them.

Files load in file-name order, rules in file order. Every key is checked:
unknown keys, wrong types, bad regexes, unknown SLA policy / template / macro
names and duplicate rule names are errors, each a `RuleError` of one line
naming the file, the rule (name and 1-based index) and the field, e.g.
`rules/10-billing.toml: rule "refund" (#2): when.subject: invalid regex: ...`.
`load_rules` raises the first; `validate_all` (for `maild check`) returns them
all. The only I/O is reading the rule files; nothing is evaluated here.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from maild.errors import RuleError
from maild.rules.actions import ACTIONS, KnownNames
from maild.rules.conditions import CONDITIONS
from maild.rules.engine import RuleSet
from maild.rules.fields import FieldError, expect_bool, expect_choice, expect_known, expect_str
from maild.rules.model import PRIORITIES, Actions, Condition, Rule, RuleDefaults

RULE_KEYS = ("name", "description", "stop", "when", "then")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")

Fail = Callable[[str, str], None]


def rule_files(directory: Path) -> list[Path]:
    """The `*.toml` files of `directory` in file-name order (dot-files skipped)."""
    found = [p for p in directory.glob("*.toml") if p.is_file() and not p.name.startswith(".")]
    return sorted(found, key=lambda p: p.name)


def _error(text: str) -> RuleError:
    return RuleError(" ".join(text.split()))


def _unknown(key: str, allowed: Iterable[str], what: str) -> str:
    options = list(allowed)
    close = difflib.get_close_matches(key, options, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"allowed: {', '.join(options)}"
    return f"unknown {what} ({hint})"


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fp:
            return tomllib.load(fp)
    except tomllib.TOMLDecodeError as exc:
        raise _error(f"{path}: invalid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _error(f"{path}: cannot read: {exc}") from None


def _conditions(when: object, fail: Fail) -> tuple[Condition, ...]:
    if not isinstance(when, dict):
        fail("when", "expected a table ([rule.when])")
        return ()
    built: list[Condition] = []
    for key, value in when.items():
        builder = CONDITIONS.get(key)
        if builder is None:
            fail(f"when.{key}", _unknown(key, CONDITIONS, "condition"))
            continue
        try:
            built.append(builder(value))
        except FieldError as exc:
            fail(f"when.{key}", str(exc))
    return tuple(built)


def _actions(then: object, known: KnownNames, fail: Fail) -> Actions:
    if not isinstance(then, dict):
        fail("then", "expected a table ([rule.then])")
        return Actions()
    fields: dict[str, Any] = {}
    for key, value in then.items():
        builder = ACTIONS.get(key)
        if builder is None:
            fail(f"then.{key}", _unknown(key, ACTIONS, "action"))
            continue
        try:
            fields.update(builder(value, known))
        except FieldError as exc:
            fail(f"then.{key}", str(exc))
    if fields.get("auto_reply") and (fields.get("spam") or fields.get("ignore")):
        fail("then.auto_reply", "cannot be true in a rule that sets spam or ignore")
    return Actions(**fields)


def _name(raw: dict[str, Any]) -> tuple[str | None, str | None]:
    """(name, problem): the rule's name if it is valid, else what is wrong."""
    name = raw.get("name")
    if name is None:
        return None, "missing (every rule needs a unique name)"
    if not isinstance(name, str) or not _NAME_RE.match(name):
        return None, f"must match [a-z0-9-]+, got {name!r}"
    return name, None


def _rule(
    raw: object, path: Path, index: int, known: KnownNames, errors: list[RuleError]
) -> Rule | None:
    """One `[[rule]]` table, or None after appending its errors."""
    if not isinstance(raw, dict):
        errors.append(_error(f"{path}: rule #{index}: expected a table"))
        return None
    name, problem = _name(raw)
    label = f'"{name}" (#{index})' if name else f"#{index}"
    before = len(errors)

    def fail(field: str, message: str) -> None:
        errors.append(_error(f"{path}: rule {label}: {field}: {message}"))

    if problem:
        fail("name", problem)
    for key in raw:
        if key not in RULE_KEYS:
            fail(key, _unknown(key, RULE_KEYS, "key"))
    description = _checked(raw.get("description", ""), expect_str, "description", fail)
    stop = _checked(raw.get("stop", False), expect_bool, "stop", fail)
    when = raw.get("when", {})
    conditions = _conditions(when, fail)
    actions = _actions(raw.get("then", {}), known, fail)
    if len(errors) > before or name is None:
        return None
    opt_in = isinstance(when, dict) and when.get("ticket") in ("reply", "any")
    return Rule(name, conditions, actions, description or "", bool(stop), opt_in, str(path), index)


def _checked(value: object, check: Callable[[object], Any], field: str, fail: Fail) -> Any:
    try:
        return check(value)
    except FieldError as exc:
        fail(field, str(exc))
        return None


def _file_rules(path: Path, known: KnownNames, errors: list[RuleError]) -> list[Rule]:
    try:
        data = _read(path)
    except RuleError as exc:
        errors.append(exc)
        return []
    for key in data:
        if key not in ("rule", "automation"):  # [[automation]]: maild.escalation.loader
            errors.append(_error(f"{path}: {key}: "
                                 f"{_unknown(key, ['rule', 'automation'], 'top-level key')}"))
    entries = data.get("rule", [])
    if not isinstance(entries, list):
        errors.append(_error(f"{path}: rule: expected an array of tables ([[rule]])"))
        return []
    found = (_rule(raw, path, i, known, errors) for i, raw in enumerate(entries, start=1))
    return [rule for rule in found if rule is not None]


def _defaults_errors(defaults: RuleDefaults, known: KnownNames) -> list[RuleError]:
    checks: list[tuple[str, Callable[[], object]]] = [
        ("priority", lambda: expect_choice(defaults.priority, PRIORITIES)),
        ("sla_policy", lambda: expect_known(defaults.sla_policy, known.sla_policies, "SLA policy")),
        (
            "auto_reply_template",
            lambda: expect_known(defaults.auto_reply_template, known.templates, "template"),
        ),
    ]
    errors: list[RuleError] = []
    for field, check in checks:
        try:
            check()
        except FieldError as exc:
            errors.append(_error(f"rule defaults: {field}: {exc}"))
    return errors


def _collect(
    directory: Path, known: KnownNames, defaults: RuleDefaults
) -> tuple[list[Rule], list[RuleError]]:
    errors = _defaults_errors(defaults, known)
    if not directory.is_dir():
        return [], [*errors, _error(f"{directory}: rules directory not found")]
    rules: list[Rule] = []
    first_seen: dict[str, Rule] = {}
    for path in rule_files(directory):
        for rule in _file_rules(path, known, errors):
            earlier = first_seen.setdefault(rule.name, rule)
            if earlier is not rule:
                errors.append(
                    _error(
                        f'{path}: rule "{rule.name}" (#{rule.index}): name: duplicate rule name, '
                        f"first defined in {earlier.source} (#{earlier.index})"
                    )
                )
                continue
            rules.append(rule)
    return rules, errors


def _known(
    sla_policies: Iterable[str], templates: Iterable[str], macros: Iterable[str] | None
) -> KnownNames:
    return KnownNames(
        frozenset(sla_policies), frozenset(templates), None if macros is None else frozenset(macros)
    )


def load_rules(
    directory: Path,
    *,
    sla_policies: set[str],
    templates: set[str],
    macros: set[str] | None = None,
    defaults: RuleDefaults | None = None,
) -> RuleSet:
    """Load every rule file of `directory`; raise the first `RuleError` found."""
    chosen = defaults or RuleDefaults()
    rules, errors = _collect(directory, _known(sla_policies, templates, macros), chosen)
    if errors:
        raise errors[0]
    return RuleSet(tuple(rules), chosen)


def validate_all(
    directory: Path,
    *,
    sla_policies: set[str],
    templates: set[str],
    macros: set[str] | None = None,
    defaults: RuleDefaults | None = None,
) -> list[RuleError]:
    """Every error in every rule file (empty when all is well), for `maild check`."""
    known = _known(sla_policies, templates, macros)
    return _collect(directory, known, defaults or RuleDefaults())[1]
