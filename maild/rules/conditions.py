"""The `when` conditions of a rule: one small class per TOML key.

Each class has `name` (its key) and a pure `check(facts) -> bool`; patterns are
compiled once, when the rule file is loaded. `CONDITIONS` maps every allowed key
to the function that builds its condition from the raw TOML value, so an
unknown key is an error at load time, never a silently ignored typo. Nothing
here reads files, the clock or the database.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from maild.rules.fields import (
    FieldError,
    compile_globs,
    compile_regex,
    expect_bool,
    expect_choice,
    expect_str,
    expect_str_list,
    expect_table,
    type_name,
)
from maild.rules.model import Condition, MessageFacts

TICKET_KINDS = ("new", "reply", "any")
BODY_LIMIT = 100_000  # characters of body text a `body` regex searches
_COMPARISON_RE = re.compile(r"^\s*(==|!=|>=|<=|>|<)?\s*(\d+)\s*$")
_LANGUAGE_RE = re.compile(r"^[a-z]{2,3}$")
_HEADER_NAME_RE = re.compile(r"^[!-9;-~]+$")  # printable ASCII, no colon, no space
_COMMENT_RE = re.compile(r"\([^()]*\)")


def _header_value(value: str) -> str:
    """Compared form: RFC 5322 comments dropped, so "1 (Highest)" equals "1"."""
    return _COMMENT_RE.sub("", value).strip().casefold()


def _any_glob(patterns: tuple[re.Pattern[str], ...], addresses: tuple[str, ...]) -> bool:
    lowered = [addr.lower() for addr in addresses if addr]
    return any(p.match(addr) for p in patterns for addr in lowered)


def _domain(addr: str) -> str:
    return addr.rpartition("@")[2].lower()


@dataclass(frozen=True)
class FromCondition:
    patterns: tuple[re.Pattern[str], ...]
    name: ClassVar[str] = "from"

    def check(self, facts: MessageFacts) -> bool:
        return _any_glob(self.patterns, (facts.message.from_addr,))


@dataclass(frozen=True)
class FromDomainCondition:
    """The sender's domain is one of `domains` or a subdomain of one."""

    domains: tuple[str, ...]
    name: ClassVar[str] = "from_domain"

    def check(self, facts: MessageFacts) -> bool:
        domain = _domain(facts.message.from_addr)
        return bool(domain) and any(domain == d or domain.endswith("." + d) for d in self.domains)


@dataclass(frozen=True)
class ToCondition:
    patterns: tuple[re.Pattern[str], ...]
    name: ClassVar[str] = "to"

    def check(self, facts: MessageFacts) -> bool:
        msg = facts.message
        return _any_glob(self.patterns, tuple(a.addr for a in (*msg.to, *msg.cc)))


@dataclass(frozen=True)
class MailboxCondition:
    patterns: tuple[re.Pattern[str], ...]
    name: ClassVar[str] = "mailbox"

    def check(self, facts: MessageFacts) -> bool:
        return _any_glob(self.patterns, (facts.mailbox.lower(),))


@dataclass(frozen=True)
class SubjectCondition:
    pattern: re.Pattern[str]
    name: ClassVar[str] = "subject"

    def check(self, facts: MessageFacts) -> bool:
        return self.pattern.search(facts.message.subject) is not None


@dataclass(frozen=True)
class BodyCondition:
    pattern: re.Pattern[str]
    name: ClassVar[str] = "body"

    def check(self, facts: MessageFacts) -> bool:
        return self.pattern.search(facts.message.text[:BODY_LIMIT]) is not None


@dataclass(frozen=True)
class HeaderCondition:
    """Every listed header has the value (case-insensitive, comments ignored); "*": present."""

    expected: tuple[tuple[str, str], ...]
    name: ClassVar[str] = "header"

    def check(self, facts: MessageFacts) -> bool:
        return all(self._holds(h, v, facts) for h, v in self.expected)

    @staticmethod
    def _holds(header: str, want: str, facts: MessageFacts) -> bool:
        values = facts.message.header_all(header)
        if want == "*":
            return bool(values)
        return any(_header_value(v) == want for v in values)


@dataclass(frozen=True)
class LanguageCondition:
    languages: tuple[str, ...]
    name: ClassVar[str] = "language"

    def check(self, facts: MessageFacts) -> bool:
        return facts.language is not None and facts.language.lower() in self.languages


@dataclass(frozen=True)
class TicketCondition:
    kind: str
    name: ClassVar[str] = "ticket"

    def check(self, facts: MessageFacts) -> bool:
        if self.kind == "any":
            return True
        return facts.is_new_ticket == (self.kind == "new")


_OPERATORS: dict[str, Callable[[int, int], bool]] = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
}


@dataclass(frozen=True)
class PreviousTicketsCondition:
    operator: str
    count: int
    name: ClassVar[str] = "previous_tickets"

    def check(self, facts: MessageFacts) -> bool:
        return _OPERATORS[self.operator](facts.previous_tickets, self.count)


@dataclass(frozen=True)
class BusinessHoursCondition:
    during: bool
    name: ClassVar[str] = "business_hours"

    def check(self, facts: MessageFacts) -> bool:
        return facts.in_business_hours == self.during


def _build_from_domain(value: object) -> Condition:
    domains = tuple(d.lower().lstrip("@").rstrip(".") for d in expect_str_list(value))
    for domain in domains:
        if "@" in domain or "." not in domain or " " in domain:
            raise FieldError(f"not a domain: {domain!r}")
    return FromDomainCondition(domains)


def _build_header(value: object) -> Condition:
    table = expect_table(value)
    if not table:
        raise FieldError("must name at least one header")
    expected: list[tuple[str, str]] = []
    for header, want in table.items():
        if not _HEADER_NAME_RE.match(header):
            raise FieldError(f"not a header name: {header!r}")
        if not isinstance(want, str):
            raise FieldError(f"{header}: expected a string, got {type_name(want)}")
        expected.append((header, want.strip() if want.strip() == "*" else _header_value(want)))
    return HeaderCondition(tuple(expected))


def _build_language(value: object) -> Condition:
    codes = tuple(c.lower() for c in expect_str_list(value))
    for code in codes:
        if not _LANGUAGE_RE.match(code):
            raise FieldError(f"not an ISO 639-1 language code: {code!r}")
    return LanguageCondition(codes)


def _build_previous_tickets(value: object) -> Condition:
    if isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
    else:
        text = expect_str(value)
    found = _COMPARISON_RE.match(text)
    if not found:
        raise FieldError(f'expected a comparison like ">= 3", got {text!r}')
    return PreviousTicketsCondition(found.group(1) or "==", int(found.group(2)))


CONDITIONS: dict[str, Callable[[object], Condition]] = {
    "from": lambda v: FromCondition(compile_globs(v)),
    "from_domain": _build_from_domain,
    "to": lambda v: ToCondition(compile_globs(v)),
    "subject": lambda v: SubjectCondition(compile_regex(v)),
    "body": lambda v: BodyCondition(compile_regex(v)),
    "header": _build_header,
    "language": _build_language,
    "mailbox": lambda v: MailboxCondition(compile_globs(v)),
    "ticket": lambda v: TicketCondition(expect_choice(v, TICKET_KINDS)),
    "previous_tickets": _build_previous_tickets,
    "business_hours": lambda v: BusinessHoursCondition(expect_bool(v)),
}
