"""Guess the language a customer wrote in, for rules and per-language macros.

`detect_language` is deterministic (langdetect with a fixed seed, on a private
detector factory so the library's global state is left alone) and never raises:
text that is too short or that langdetect cannot read gives the caller's
default. Only the customer's own words count: quoted lines ("> ..."), the
"On ... wrote:" line above them, signatures and forwarded/original-message
blocks are dropped first. Only the profiles in LANGUAGES are loaded (speed and
memory). This module does no I/O beyond langdetect loading those bundled
profiles once, and knows nothing about tickets or mail headers.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory
from langdetect.lang_detect_exception import LangDetectException

MIN_LETTERS = 20
MAX_CHARS = 5000
SEED = 0

_CUT_RE = re.compile(
    r"^\s*(?:-{2,}\s*(?:original message|forwarded message|özgün ileti|orijinal mesaj"
    r"|iletilen ileti|yönlendirilmiş ileti)|_{10,})",
    re.IGNORECASE,
)
_ATTRIBUTION_RE = re.compile(r"(?:wrote|yazdı|schrieb|a écrit|escribió)\s*:\s*$", re.IGNORECASE)
_NOISE_RE = re.compile(r"https?://\S+|www\.\S+|\S+@\S+")


# The languages maild tells apart. Scoring every n-gram against all 55 bundled
# profiles cost a quarter of ingest time (bench/README.md); these cover the
# customers seen so far and the likely confusions with them.
LANGUAGES = ("en", "tr", "de", "fr", "es", "it", "nl", "pt", "ru", "ar", "pl", "sv")


@lru_cache(maxsize=1)
def _factory() -> DetectorFactory:
    factory = DetectorFactory()
    profiles = [(Path(PROFILES_DIRECTORY) / code).read_text(encoding="utf-8")
                for code in LANGUAGES]
    factory.load_json_profile(profiles)
    factory.set_seed(SEED)
    return factory


def own_words(text: str) -> str:
    """The part of a mail body the sender wrote: no quotes, signature or forwards."""
    kept: list[str] = []
    for line in text.splitlines():
        if line.rstrip() == "--" or _CUT_RE.match(line):
            break
        stripped = line.strip()
        if stripped.startswith(">") or _ATTRIBUTION_RE.search(stripped):
            continue
        kept.append(line)
    return _NOISE_RE.sub(" ", "\n".join(kept))


def _iso639_1(code: str) -> str:
    """langdetect's 'zh-cn' / 'zh-tw' become 'zh'; the others are ISO 639-1 already."""
    return code.split("-", 1)[0].lower()


def detect_language(text: str, default: str) -> str:
    """ISO 639-1 code of `text`'s language, or `default` when it cannot tell."""
    words = own_words(text)[:MAX_CHARS]
    if sum(ch.isalpha() for ch in words) < MIN_LETTERS:
        return default
    try:
        detector = _factory().create()
        detector.append(words)
        return _iso639_1(detector.detect())
    except LangDetectException:
        return default
