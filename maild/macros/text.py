"""Customer text for matching: strip quotes and signatures, then tokenize.

`strip_reply()` keeps only what the customer just wrote: mail-parser-reply
cuts quoted replies and signatures (it has no Turkish rules), then a
line-based pass drops `>` lines and cuts at reply headers ("On ... wrote:",
"... tarihinde ... yazdı:", "Kimden:") and at sign-off lines ("Best regards",
"Saygılarımla"). `tokenize()` is deliberately simple and explainable:
Turkish-aware case folding, words split at punctuation and apostrophes, a
short stop-word list, and light stemming (Turkish: first 5 letters; English:
a few suffixes). Pure functions; no I/O, no ranking (see suggest.py).
"""

from __future__ import annotations

import re
import unicodedata

from mailparser_reply import EmailMessage
from mailparser_reply.constants import MAIL_LANGUAGES

TURKISH_PREFIX = 5
MIN_TOKEN = 2

_CUT_LINE_RES: tuple[re.Pattern[str], ...] = (
    re.compile(r"\bwrote:\s*$", re.IGNORECASE),
    re.compile(r"\byazd[ıi]:\s*$", re.IGNORECASE),
    re.compile(
        r"^-{2,}\s*(?:original message|orijinal ileti|özgün ileti|forwarded message)", re.IGNORECASE
    ),
    re.compile(r"^(?:from|kimden|gönderen|gönderildi|sent)\s*:", re.IGNORECASE),
    re.compile(r"^(?:--|__)\s*$"),
    re.compile(
        r"^(?:sent from my|get outlook|iphone'umdan gönderildi|android için)", re.IGNORECASE
    ),
    re.compile(
        r"^(?:best regards|kind regards|warm regards|regards|best|cheers|thanks|thank you"
        r"|many thanks|sincerely|saygılarımla|saygılar|iyi çalışmalar|teşekkürler"
        r"|teşekkür ederim|şimdiden teşekkürler|kolay gelsin)[\s,.!]*$",
        re.IGNORECASE,
    ),
)

_WORD_RE = re.compile(r"\w+(?:['’]\w+)*")
_APOSTROPHE_RE = re.compile(r"['’]")

_STOP_EN = frozenset(
    {
        "a", "about", "am", "an", "and", "any", "are", "as", "at", "be", "been", "but", "by",
        "can", "could", "did", "do", "does", "don", "for", "from", "get", "got", "had", "has",
        "have", "hello", "hi", "how", "i", "if", "in", "into", "is", "it", "its", "just", "me",
        "my", "no", "not", "of", "on", "or", "our", "out", "please", "so", "than", "that", "the",
        "their", "them", "then", "there", "this", "to", "too", "up", "us", "was", "we", "were",
        "what", "when", "which", "will", "with", "would", "you", "your",
    }
)  # fmt: skip
_STOP_TR = frozenset(
    {
        "acaba", "ama", "ben", "benim", "bir", "biz", "bu", "da", "daha", "de", "değil",
        "diye", "en", "gibi", "hala", "hâlâ", "hem", "hep", "her", "hiç", "için", "ile", "ise",
        "iyi", "kez", "ki", "kadar", "merhaba", "mi", "mı", "mu", "mü", "nasıl", "ne", "neden", "o",
        "sadece", "siz", "sizin", "size", "şey", "şu", "ve", "veya", "ya", "yine",
    }
)  # fmt: skip
STOP_WORDS: dict[str, frozenset[str]] = {"en": _STOP_EN, "tr": _STOP_TR}

_EN_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("ies", "y"), ("ied", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("ly", ""), ("s", ""),
)  # fmt: skip


def strip_reply(text: str, language: str | None) -> str:
    """The newest part of a customer message: no quotes, headers or signature."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _cut_lines(_library_reply(text, language or "en"))


def _library_reply(text: str, language: str) -> str:
    languages = [language] if language in MAIL_LANGUAGES else ["en"]
    try:
        message = EmailMessage(text=text, languages=languages, keep_hyphen_lists=True).read()
    except Exception:  # a regex failure in the parser must not lose the text
        return text
    return message.replies[0].body if message.replies else text


def _cut_lines(text: str) -> str:
    kept: list[str] = []
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped.startswith(">"):
            continue
        if any(pattern.search(stripped) for pattern in _CUT_LINE_RES):
            break
        kept.append(line)
    return "\n".join(kept).strip()


def fold_case(text: str, language: str | None) -> str:
    """Lower-case `text`; for Turkish 'İ' -> 'i' and 'I' -> 'ı'."""
    text = unicodedata.normalize("NFKC", text)
    if _is_turkish(language):
        text = text.replace("İ", "i").replace("I", "ı").lower()
    else:
        text = text.casefold()
    return text.replace("\u0307", "")


def tokenize(text: str, language: str | None) -> list[str]:
    """Stemmed, case-folded words of `text`, without stop words and numbers."""
    stop = STOP_WORDS.get(_base_language(language), frozenset())
    tokens = []
    for match in _WORD_RE.finditer(fold_case(text, language)):
        word = _APOSTROPHE_RE.split(match.group())[0].strip("_")
        if len(word) < MIN_TOKEN or word.isdigit() or word in stop:
            continue
        tokens.append(stem(word, language))
    return tokens


def stem(word: str, language: str | None) -> str:
    """Turkish: the first 5 letters. English: one common suffix off. Else: as is."""
    if _is_turkish(language):
        return word[:TURKISH_PREFIX]
    if _base_language(language) == "en":
        return _stem_english(word)
    return word


def _stem_english(word: str) -> str:
    for suffix, replacement in _EN_SUFFIXES:
        shortest = 4 if suffix == "ly" else 3  # "reply" keeps its "ly"
        if word.endswith(suffix) and len(word) - len(suffix) >= shortest:
            if suffix == "s" and word[-2] in "sui":
                break
            word = word[: -len(suffix)] + replacement
            if suffix in ("ing", "ed") and word[-1] == word[-2] and word[-1] not in "aeiouls":
                word = word[:-1]
            break
    if word.endswith("e") and len(word) > 4:
        word = word[:-1]
    return word


def _base_language(language: str | None) -> str:
    return (language or "").split("-")[0].lower()


def _is_turkish(language: str | None) -> bool:
    return _base_language(language) == "tr"
