"""Rank macros against a customer's new message with BM25.

Each macro becomes one document: title, description, keywords (counted twice:
they are written for matching), tags and the body text without Jinja syntax.
Only macros in the customer's language compete when there are any; otherwise
all do. The customer text is quote- and signature-stripped and tokenized by
`text.py`. Macros a rule suggests (`prefer`) are scored by the same BM25 and
ranked among the rest by that score; the rule only breaks ties and keeps them
in the list when the text matches nothing in them. A suggestion lists the
matched (stemmed) terms, highest contribution first, so an agent can see why
it was suggested. Pure: no I/O, no database, nothing learned from past tickets.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from maild.macros.loader import MacroLibrary
from maild.macros.model import Macro
from maild.macros.text import strip_reply, tokenize

if TYPE_CHECKING:
    from rank_bm25 import BM25Okapi

_JINJA_RE = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
KEYWORD_WEIGHT = 2


@dataclass(frozen=True)
class Suggestion:
    """One ranked macro; `score` is BM25 rounded to 3 decimals."""

    name: str
    language: str
    score: float
    matched_terms: tuple[str, ...]


def macro_document(macro: Macro) -> list[str]:
    """The tokens BM25 indexes for `macro`."""
    parts = [
        macro.title,
        macro.description,
        *(list(macro.keywords) * KEYWORD_WEIGHT),
        *macro.tags,
        _JINJA_RE.sub(" ", macro.body_source),
    ]
    return tokenize("\n".join(parts), macro.language)


def suggest_macros(
    text: str, language: str | None, library: MacroLibrary, limit: int = 3,
    prefer: Sequence[str] = (),
) -> list[Suggestion]:
    """The `limit` best macros for `text`, best first. Macros that match nothing are left
    out, unless a rule suggested them (`prefer`): those rank by their score too, before
    an equal score, and stay in the list (after the matches) when they match nothing."""
    candidates = library.in_language(language) if language else []
    if not candidates:
        candidates = library.all()
    if not candidates or limit <= 0:
        return []
    query = tokenize(strip_reply(text, language), language)
    bm25 = _index(tuple(candidates))
    scores = [round(float(score), 3) for score in bm25.get_scores(query)] if query \
        else [0.0] * len(candidates)
    preferred = set(prefer)
    ranked = sorted((i for i, score in enumerate(scores)
                     if score > 0 or candidates[i].name in preferred), key=lambda i: (
        -scores[i], candidates[i].name not in preferred, candidates[i].name,
        candidates[i].language))
    out: list[Suggestion] = []
    for i in ranked:  # matched terms only for the macros shown: they cost a scoring each
        terms = _matched_terms(bm25, query, i) if scores[i] > 0 else ()
        if terms or candidates[i].name in preferred:
            out.append(Suggestion(candidates[i].name, candidates[i].language, scores[i], terms))
        if len(out) == limit:
            return out
    for name in dict.fromkeys(prefer):  # a rule's macro not written in this language
        if len(out) < limit and name in library.names() and name not in {s.name for s in out}:
            out.append(Suggestion(name, library.get(name, language).language, 0.0, ()))
    return out


@lru_cache(maxsize=32)
def _index(candidates: tuple[Macro, ...]) -> BM25Okapi:
    """The BM25 index of a set of macros, built once (macros are immutable). rank_bm25
    is imported here: it brings numpy (~50 ms), which commands that suggest nothing
    (`maild tickets list`, `maild check`) should not pay at every start."""
    from rank_bm25 import BM25Okapi

    return BM25Okapi([macro_document(m) for m in candidates])


def _matched_terms(bm25: BM25Okapi, query: list[str], index: int) -> tuple[str, ...]:
    """Query terms found in document `index`, by their share of its score."""
    contributions: dict[str, float] = {}
    for term in set(query):
        if bm25.doc_freqs[index].get(term):
            score = bm25.get_batch_scores([term], [index])[0]  # this document only
            contributions[term] = float(score) * query.count(term)
    ordered = sorted(contributions.items(), key=lambda item: (-item[1], item[0]))
    return tuple(term for term, share in ordered if share > 0)
