"""Evaluate a loaded `RuleSet` against one message's facts: decide, never do.

Semantics: rules run in order; every matching rule's actions apply. Scalars
(priority, SLA policy, auto_reply, template, spam, ignore) are overridden by a
later matching rule; tags and suggested macros accumulate, de-duplicated, first
occurrence kept. `stop = true` ends evaluation after that rule. Auto-replies go
to new tickets only: a rule's `auto_reply = true` reaches a reply to an existing
ticket only if that rule says `ticket = "reply"` or `ticket = "any"`; `spam` or
`ignore` force the auto-reply off. The result is a `Decision` whose `actions()`
is the dry run; sending, tagging and storing are the caller's business. No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from maild.rules.model import Decision, MessageFacts, Rule, RuleDefaults


@dataclass
class _Tally:
    """The decision being built while rules run; private to one `evaluate` call."""

    values: dict[str, Any]
    matched: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    suggest: list[str] = field(default_factory=list)
    set_by: dict[str, str] = field(default_factory=dict)

    @classmethod
    def start(cls, defaults: RuleDefaults, facts: MessageFacts) -> _Tally:
        return cls(
            {
                "priority": defaults.priority,
                "sla_policy": defaults.sla_policy,
                "auto_reply_template": defaults.auto_reply_template,
                "auto_reply": defaults.auto_reply_new_tickets and facts.is_new_ticket,
                "spam": False,
                "ignore": False,
            }
        )

    def _set(self, key: str, value: object, rule: str) -> None:
        self.values[key] = value
        self.set_by[key] = rule

    def apply(self, rule: Rule, facts: MessageFacts) -> None:
        actions = rule.actions
        self.matched.append(rule.name)
        scalars: tuple[tuple[str, object], ...] = (
            ("priority", actions.priority),
            ("sla_policy", actions.sla_policy),
            ("auto_reply_template", actions.auto_reply_template),
            ("spam", actions.spam),
            ("ignore", actions.ignore),
        )
        for key, value in scalars:
            if value is not None:
                self._set(key, value, rule.name)
        wanted = actions.auto_reply
        if wanted is not None and (not wanted or facts.is_new_ticket or rule.replies_opt_in):
            self._set("auto_reply", wanted, rule.name)
        self.tags.extend(t for t in actions.tags if t not in self.tags)
        self.suggest.extend(m for m in actions.suggest if m not in self.suggest)

    def decision(self) -> Decision:
        values = self.values
        silenced = values["spam"] or values["ignore"]
        return Decision(
            matched=tuple(self.matched),
            priority=values["priority"],
            tags=tuple(self.tags),
            sla_policy=values["sla_policy"],
            auto_reply=bool(values["auto_reply"]) and not silenced,
            auto_reply_template=values["auto_reply_template"],
            suggest=tuple(self.suggest),
            spam=values["spam"],
            ignore=values["ignore"],
            set_by=tuple(self.set_by.items()),
        )


@dataclass(frozen=True)
class RuleSet:
    """Rules in evaluation order plus the defaults for values no rule sets."""

    rules: tuple[Rule, ...] = ()
    defaults: RuleDefaults = RuleDefaults()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(rule.name for rule in self.rules)

    def evaluate(self, facts: MessageFacts, defaults: RuleDefaults | None = None) -> Decision:
        """Run every rule on `facts` (in order, honouring `stop`) and decide."""
        tally = _Tally.start(defaults or self.defaults, facts)
        for rule in self.rules:
            if not rule.matches(facts):
                continue
            tally.apply(rule, facts)
            if rule.stop:
                break
        return tally.decision()
