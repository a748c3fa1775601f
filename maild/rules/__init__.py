"""maild's declarative rules: TOML files in, a `Decision` per message out.

Format (full reference with examples: `docs/rules.md`). Files `rules/*.toml`
load in file-name order, rules in file order::

    [[rule]]
    name = "refunds"              # required, unique, [a-z0-9-]+
    description = "..."           # optional
    stop = false                  # optional: true ends evaluation after this rule
    [rule.when]                   # all must hold; absent = always matches
    # from, from_domain, to, mailbox: globs/domains, any of; subject, body: regex
    # header = {"X-Priority" = "1"} ("*" = present); language = ["tr"]
    # ticket = new|reply|any; previous_tickets = ">= 3"; business_hours = true|false
    [rule.then]
    # priority = low|normal|high|urgent; tags = [...]; sla = "vip"; auto_reply = bool
    # auto_reply_template = "eta-vip"; suggest = [macro names]; spam = bool; ignore = bool

Every matching rule applies; later rules override scalars, tags and suggestions
accumulate; auto-replies go to new tickets only unless the rule that turns them
on says `ticket = "reply"` or `"any"`; spam/ignore force the auto-reply off.
Unknown keys, wrong types and unknown names are `RuleError`s naming file, rule
and field.

The public API is re-exported here: `load_rules` and `validate_all` (loader),
`RuleSet.evaluate` (engine), and the values `MessageFacts`, `Decision`,
`RuleDefaults`, `Rule`, `Actions` (model). This package is pure apart from
reading the rule files: no database, no network, no clock; the caller gathers
the facts and carries out the decision.
"""

from maild.rules.actions import KnownNames
from maild.rules.engine import RuleSet
from maild.rules.loader import load_rules, rule_files, validate_all
from maild.rules.model import PRIORITIES, Actions, Decision, MessageFacts, Rule, RuleDefaults

__all__ = [
    "PRIORITIES",
    "Actions",
    "Decision",
    "KnownNames",
    "MessageFacts",
    "Rule",
    "RuleDefaults",
    "RuleSet",
    "load_rules",
    "rule_files",
    "validate_all",
]
