"""Never auto-reply to a machine: the loop guard, derived from the classification.

`check_message` says "do not send the ETA reply" when `maild.classify` finds the
message machine mail (the reason is the machine marker's name) or sets its
`no_autoreply` reason (one of our addresses, no usable sender, an agent, or an
`X-Auto-Response-Suppress` request). There is no second list of markers here:
change what counts as machine mail in `maild/classify/markers.py`.

A verdict means "do not auto-reply", nothing more: maild never drops mail on it.
Rate limits ("at most one ETA reply per sender per window") need history, so
they belong to the caller, not here.

The headers maild puts on its own automatic mail are `maild.compose.AUTO_HEADERS`
(defined there once, where they are added). maild does not add `Precedence`: it is no
standard (RFC 2076 marks it "discouraged"), RFC 3834 section 3.1.8 only says a
response MAY carry it and warns that its meaning varies, and `bulk` makes mailbox
providers file a one-to-one answer to a customer as bulk mail. `Auto-Submitted`
(RFC 3834) and `X-Auto-Response-Suppress` (honoured by Exchange/Outlook) cover
the responders that matter.
"""

from __future__ import annotations

from dataclasses import dataclass

from maild.classify import DESCRIPTIONS, Classification, ClassifyContext, classify
from maild.parse import ParsedMessage

# The loop guard reads the same context as the classifier.
GuardContext = ClassifyContext


@dataclass(frozen=True)
class Verdict:
    """`automated` ("no ETA reply") and, when it is, the reason and its description."""

    automated: bool
    reason: str | None = None
    description: str | None = None


def verdict_of(c: Classification) -> Verdict:
    if c.machine:
        return Verdict(True, c.reason, c.description)
    if c.no_autoreply:
        return Verdict(True, c.no_autoreply, DESCRIPTIONS.get(c.no_autoreply, c.description))
    return Verdict(False)


def check_message(msg: ParsedMessage, ctx: GuardContext) -> Verdict:
    """The loop-guard verdict for `msg`: `classify`, read as "may we auto-reply?"."""
    return verdict_of(classify(msg, ctx))
