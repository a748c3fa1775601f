"""The "difficult conversation" signal: which of anger, urgency, threat (to cancel or
complain), all-caps and repeated contacts a ticket's unanswered customer text shows,
with the words that matched. Transparent by design: the lists are in
`maild.escalation.words`, the result names every hit. Pure: text in, signals out."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from maild.escalation import words

SIGNAL_KINDS = ("anger", "urgency", "threat", "all-caps", "repeated-contacts")


@dataclass(frozen=True)
class Signals:
    """Signal kind -> what triggered it (matched words, or a short fact)."""

    hits: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(kind for kind, _ in self.hits)

    def describe(self) -> list[str]:
        return [f"{kind}: {', '.join(found)}" for kind, found in self.hits]


@lru_cache(maxsize=64)
def _pattern(kind: str, language: str) -> re.Pattern[str] | None:
    table = words.KINDS[kind]
    entries = [*table.get(language, ()), *(table["en"] if language != "en" else ())]
    if not entries:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(f"(?:{e})" for e in entries) + r")(?!\w)",
                      re.IGNORECASE)


def _caps(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    if len(letters) < words.CAPS_MIN_LETTERS:
        return False
    return sum(1 for c in letters if c.isupper()) / len(letters) >= words.CAPS_SHARE


def detect(texts: Sequence[str], language: str | None, contacts_in_a_day: int = 0) -> Signals:
    """The signals in the customer's own `texts` (quotes already stripped); English
    words are always looked for too (customers mix languages)."""
    lang = (language or "en").split("-")[0]
    hits: list[tuple[str, tuple[str, ...]]] = []
    for kind in ("anger", "urgency", "threat"):
        pattern = _pattern(kind, lang)
        found = sorted({m.group(0).lower() for t in texts for m in pattern.finditer(t)}) \
            if pattern else []
        if found:
            hits.append((kind, tuple(found)))
    if any(_caps(t) for t in texts):
        hits.append(("all-caps", ("written in capitals",)))
    if contacts_in_a_day >= words.REPEATED_CONTACTS:
        hits.append(("repeated-contacts", (f"{contacts_in_a_day} messages within 24 h",)))
    return Signals(tuple(hits))
