"""Survey links and answers, pure: tokens, `mailto:` URLs and answer subjects.

A survey link is a `mailto:` URL to the support address whose subject carries the
ticket (`[#ID]`), the question and score (`csat=N`, `nps=N`, or `csat=optout`) and
a token: the first 20 hex digits of HMAC-SHA256(secret, "kind:ticket:score").
Without the secret nobody can make a valid answer for another ticket or score.
`parse_answer` recognises such a subject in any mail (clients prefix "Re:" or
translate nothing else); `token_ok` checks it in constant time. No I/O here.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from urllib.parse import quote

CSAT_SCORES = (1, 2, 3, 4, 5)
NPS_SCORES = tuple(range(11))
OPT_OUT = "optout"
TOKEN_CHARS = 20
_ANSWER_RE = re.compile(
    r"\[#(?P<ticket>\d{1,12})\][^\[]*?\b(?P<kind>csat|nps)=(?P<score>\d{1,2}|optout)\b"
    r".*?\bkey=(?P<token>[0-9a-f]{8,64})\b", re.IGNORECASE)


@dataclass(frozen=True)
class SurveyAnswer:
    """What a survey answer's subject says; `score` None for the opt-out link."""

    ticket_id: int
    kind: str  # csat | nps
    score: int | None
    token: str

    @property
    def opt_out(self) -> bool:
        return self.score is None


def token(secret: str, kind: str, ticket_id: int, score: int | str) -> str:
    mac = hmac.new(secret.encode(), f"{kind}:{ticket_id}:{score}".encode(), hashlib.sha256)
    return mac.hexdigest()[:TOKEN_CHARS]


def answer_subject(secret: str, kind: str, ticket_id: int, score: int | str) -> str:
    """The subject a link for `score` (or OPT_OUT) puts into the answer mail."""
    return f"Survey [#{ticket_id}] {kind}={score} key={token(secret, kind, ticket_id, score)}"


def mailto(address: str, subject: str) -> str:
    return f"mailto:{quote(address, safe='@')}?subject={quote(subject, safe='')}"


def parse_answer(subject: str) -> SurveyAnswer | None:
    """The survey answer in `subject`, or None if it is not one."""
    found = _ANSWER_RE.search(subject or "")
    if found is None:
        return None
    kind, raw = found.group("kind").lower(), found.group("score").lower()
    score = None if raw == OPT_OUT else int(raw)
    if score is not None and score not in (CSAT_SCORES if kind == "csat" else NPS_SCORES):
        return SurveyAnswer(int(found.group("ticket")), kind, -1, found.group("token").lower())
    return SurveyAnswer(int(found.group("ticket")), kind, score, found.group("token").lower())


def token_ok(secret: str, answer: SurveyAnswer) -> bool:
    score: int | str = OPT_OUT if answer.score is None else answer.score
    return hmac.compare_digest(token(secret, answer.kind, answer.ticket_id, score),
                               answer.token)
