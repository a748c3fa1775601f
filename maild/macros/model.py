"""The macro as a frozen value, and the names a macro template may use.

A `Macro` is what one file in `templates/macros/` parses into; `TEMPLATE_VARIABLES`
is the documented variable set (docs/macros.md) that both the loader (static
check) and the renderer (context) agree on. This module does no I/O, no
parsing and no rendering.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

#: Ticket statuses a macro may set when it is sent.
STATUSES: tuple[str, ...] = ("open", "pending", "solved")

#: Macro names are kebab-case so `NAME.LANG.j2` splits unambiguously.
NAME_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")

#: Language codes: ISO 639-1/2 in lower case, optionally with a region ("pt-br").
LANGUAGE_RE = re.compile(r"[a-z]{2,3}(?:-[a-z0-9]{2,8})?")

#: Every variable a template may read: top-level object -> its attributes.
TEMPLATE_VARIABLES: dict[str, frozenset[str]] = {
    "customer": frozenset({"name", "email"}),
    "ticket": frozenset({"id", "subject", "tag", "status"}),
    "agent": frozenset({"name", "email"}),
    "eta": frozenset({"text", "due"}),
    "last_message": frozenset({"text", "quoted"}),
    "company": frozenset({"name"}),
    "mailbox": frozenset({"address"}),
}


@dataclass(frozen=True)
class MacroActions:
    """What sending the macro does to the ticket besides mailing the reply."""

    status: str | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Macro:
    """One macro in one language, as loaded from `NAME.LANG.j2`.

    `subject` is an optional subject template; `None` means the caller's
    default ("Re: <ticket subject> [#ID]").
    """

    name: str
    language: str
    title: str
    tags: tuple[str, ...]
    description: str
    keywords: tuple[str, ...]
    actions: MacroActions
    body_source: str
    path: Path
    subject: str | None = None
    # It restates what the ETA auto-reply said (thanks, ticket number, when we answer):
    # never offered as the draft once an ETA reply went out to the ticket.
    acknowledgement: bool = False

    @property
    def label(self) -> str:
        """How errors and logs name this macro: `refund-policy (tr)`."""
        return f"{self.name} ({self.language})"
