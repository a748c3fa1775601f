"""Subject prefixes: the one list of reply and forward prefixes, and the `[#ID]` tag.

Mail clients put "Re:", "AW:", "YNT:", "Fwd:", "WG:", "İlt:"… in front of a
subject, in their user's language. Threading (`maild.threads`), the subject of a
reply maild composes (`maild.compose`, `maild.macros.render`) and the machine
mail markers (`maild.classify.markers`) all read prefixes from here, so a word
added for one is known to all. Pure: regular expressions and string functions,
no other maild module.
"""

from __future__ import annotations

import re
from typing import Final

#: `[#123]`: the ticket tag maild puts in every subject it writes.
TAG_RE: Final = re.compile(r"\[#(\d{1,12})\]")
#: Reply prefixes: English, German (AW), Nordic (SV, VS), Turkish (YNT), Dutch (Antw),
#: French (RE/RÉF), Italian (RIF), Polish (Odp), Czech (Vá), Spanish/Portuguese (RES).
REPLY_WORDS: Final = r"re|aw|sv|vs|ynt|antw|r[ée]f|rif|odp|vá|res"
#: Forward prefixes: Fwd/Fw, German (WG), French (TR), Turkish (İlt, in its case
#: foldings), Dutch (Doorst), Spanish/Portuguese (Enc, RV), Nordic (VL, FS).
FORWARD_WORDS: Final = r"fwd?|wg|tr|i̇lt|İlt|ilt|ılt|doorst|enc|rv|vl|fs"
_COUNT = r"\s*(?:\[\d+\]|\(\d+\))?\s*[:：]\s*"  # "Re[2]:", "AW(3):", full-width colon
#: A pattern (for composing into others): any run of reply prefixes at the start.
REPLY_PREFIXES: Final = rf"^\s*(?:(?:{REPLY_WORDS}){_COUNT})*"
_PREFIX_RE = re.compile(
    rf"^\s*(?:(?P<word>{REPLY_WORDS}|{FORWARD_WORDS}){_COUNT}|\[#\d+\]\s*)", re.IGNORECASE)
_REPLY_RE = re.compile(REPLY_PREFIXES, re.IGNORECASE)
_FORWARD_WORD_RE = re.compile(rf"^(?:{FORWARD_WORDS})$", re.IGNORECASE)
#: A subject that starts with a forward prefix.
FORWARD_PREFIX_RE: Final = re.compile(rf"^\s*(?:{FORWARD_WORDS}){_COUNT}", re.IGNORECASE)


def strip_prefixes(subject: str) -> tuple[str, bool]:
    """Remove reply/forward prefixes and ticket tags in front; report whether the
    outermost prefix was a forward."""
    rest, forward, first = subject, False, True
    while True:
        m = _PREFIX_RE.match(rest)
        if not m:
            return rest, forward
        word = m.group("word")
        if first and word and _FORWARD_WORD_RE.match(word):
            forward = True
        if word:
            first = False
        rest = rest[m.end():]


def strip_reply_prefixes(subject: str) -> str:
    """The subject without the reply prefixes in front (forwards are kept)."""
    return _REPLY_RE.sub("", subject, count=1)


def is_reply(subject: str) -> bool:
    """True when the subject already starts with a reply prefix."""
    return _REPLY_RE.match(subject).end() > 0  # type: ignore[union-attr]
