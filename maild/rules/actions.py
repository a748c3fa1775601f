"""The `then` table of a rule: validate each action key into `Actions`.

`ACTIONS` maps every allowed key to a function that checks the raw TOML value
(SLA policy, template and macro names against the sets the caller knows) and
returns the `Actions` fields it sets. Unknown keys are errors. Nothing here
performs an action: deciding is `engine`'s job, doing is the caller's.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from maild.rules.fields import (
    FieldError,
    expect_bool,
    expect_choice,
    expect_known,
    expect_str_list,
)
from maild.rules.model import PRIORITIES

_TAG_RE = re.compile(r"^[\w][\w.:/-]*$")


@dataclass(frozen=True)
class KnownNames:
    """Names a rule may refer to; `macros=None` skips the macro check."""

    sla_policies: frozenset[str]
    templates: frozenset[str]
    macros: frozenset[str] | None = None


def _unique(items: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _tags(value: object, known: KnownNames) -> dict[str, Any]:
    tags = _unique(tuple(t.lower() for t in expect_str_list(value)))
    for tag in tags:
        if not _TAG_RE.match(tag):
            raise FieldError(f"not a tag (letters, digits, - _ . : / only): {tag!r}")
    return {"tags": tags}


def _suggest(value: object, known: KnownNames) -> dict[str, Any]:
    names = _unique(expect_str_list(value))
    if known.macros is not None:
        for name in names:
            expect_known(name, known.macros, "macro")
    return {"suggest": names}


ActionBuilder = Callable[[object, KnownNames], dict[str, Any]]

ACTIONS: dict[str, ActionBuilder] = {
    "priority": lambda v, k: {"priority": expect_choice(v, PRIORITIES)},
    "tags": _tags,
    "sla": lambda v, k: {"sla_policy": expect_known(v, k.sla_policies, "SLA policy")},
    "auto_reply": lambda v, k: {"auto_reply": expect_bool(v)},
    "auto_reply_template": lambda v, k: {
        "auto_reply_template": expect_known(v, k.templates, "template")
    },
    "suggest": _suggest,
    "spam": lambda v, k: {"spam": expect_bool(v)},
    "ignore": lambda v, k: {"ignore": expect_bool(v)},
}
