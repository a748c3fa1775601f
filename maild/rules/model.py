"""The values of maild's rule layer: facts in, rules, decision out.

Plain frozen dataclasses and one Protocol, nothing else: no parsing (see
`loader`), no evaluation (see `engine`), no I/O. `MessageFacts` is everything a
condition may look at; the caller gathers it (language, ticket history, business
hours) so that the rules never read a clock or a database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from maild.parse import ParsedMessage

PRIORITIES = ("low", "normal", "high", "urgent")


@dataclass(frozen=True)
class MessageFacts:
    """One incoming message plus what the caller knows about its context."""

    message: ParsedMessage
    mailbox: str
    is_new_ticket: bool
    previous_tickets: int
    in_business_hours: bool
    language: str | None = None


class Condition(Protocol):
    """One `when` key: `name` is its TOML key, `check` is pure."""

    @property
    def name(self) -> str: ...

    def check(self, facts: MessageFacts) -> bool: ...


@dataclass(frozen=True)
class Actions:
    """A rule's `then` table; None means "this rule does not set it"."""

    priority: str | None = None
    tags: tuple[str, ...] = ()
    sla_policy: str | None = None
    auto_reply: bool | None = None
    auto_reply_template: str | None = None
    suggest: tuple[str, ...] = ()
    spam: bool | None = None
    ignore: bool | None = None


@dataclass(frozen=True)
class Rule:
    """One `[[rule]]`: all `conditions` must hold for `actions` to apply.

    `replies_opt_in` is true when the rule's `when.ticket` is "reply" or "any":
    only then may its `auto_reply = true` reach a reply to an existing ticket.
    """

    name: str
    conditions: tuple[Condition, ...] = ()
    actions: Actions = Actions()
    description: str = ""
    stop: bool = False
    replies_opt_in: bool = False
    source: str = ""
    index: int = 0

    def matches(self, facts: MessageFacts) -> bool:
        return all(cond.check(facts) for cond in self.conditions)


@dataclass(frozen=True)
class RuleDefaults:
    """What a decision holds when no matching rule sets a value.

    Auto-replies go to new tickets only unless a rule opts replies in.
    """

    priority: str = "normal"
    sla_policy: str = "default"
    auto_reply_template: str = "eta"
    auto_reply_new_tickets: bool = True


@dataclass(frozen=True)
class Decision:
    """What the rules decided for one message; `set_by` names who set each scalar."""

    matched: tuple[str, ...]
    priority: str
    tags: tuple[str, ...]
    sla_policy: str
    auto_reply: bool
    auto_reply_template: str
    suggest: tuple[str, ...]
    spam: bool
    ignore: bool
    set_by: tuple[tuple[str, str], ...] = field(default=())

    def source_of(self, key: str) -> str:
        """Rule name that set `key` last, or "default"."""
        return dict(self.set_by).get(key, "default")

    def actions(self) -> list[dict[str, Any]]:
        """What would be done, in order, each with the rule that asked for it.

        This is the dry run of `maild rules test`; the loop guard's verdict is
        applied by the caller on top of `auto_reply`.
        """
        out: list[dict[str, Any]] = []
        if self.spam:
            out.append({"action": "mark_spam", "rule": self.source_of("spam")})
        if self.ignore:
            out.append({"action": "ignore", "rule": self.source_of("ignore")})
        for action, key, value in (
            ("set_priority", "priority", self.priority),
            ("set_sla_policy", "sla_policy", self.sla_policy),
        ):
            out.append({"action": action, "value": value, "rule": self.source_of(key)})
        if self.tags:
            out.append({"action": "add_tags", "value": list(self.tags)})
        if self.auto_reply:
            out.append(
                {
                    "action": "auto_reply",
                    "template": self.auto_reply_template,
                    "rule": self.source_of("auto_reply"),
                }
            )
        if self.suggest:
            out.append({"action": "suggest_macros", "value": list(self.suggest)})
        return out

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form; `actions` is included for the dry run."""
        return {
            "matched": list(self.matched),
            "priority": self.priority,
            "tags": list(self.tags),
            "sla_policy": self.sla_policy,
            "auto_reply": self.auto_reply,
            "auto_reply_template": self.auto_reply_template,
            "suggest": list(self.suggest),
            "spam": self.spam,
            "ignore": self.ignore,
            "set_by": dict(self.set_by),
            "actions": self.actions(),
        }
