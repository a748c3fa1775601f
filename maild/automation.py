"""Decide what maild does about one inbound message: the `Plan`.

`plan_message` classifies the message (the loop guard is derived from that),
detects the language, evaluates the rules, computes the SLA due time and ranks
macro suggestions. It is pure given its inputs: the ingest handler
(`maild.actions`) carries a Plan out, and `maild rules test` prints the very
same Plan without storing or sending anything ("decide, then do"). Loading
rule files and templates happens once, in `load_automation`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from maild.calendar import BusinessCalendar, parse_duration
from maild.classify import Classification, classify
from maild.config import AutoReplyConfig, Config
from maild.escalation.loader import load_automations
from maild.escalation.model import TimedAutomation
from maild.eta_wording import describe_eta
from maild.language import detect_language, own_words
from maild.loopguard import GuardContext, Verdict, verdict_of
from maild.macros import MacroLibrary, load_macros
from maild.macros.suggest import suggest_macros
from maild.parse import ParsedMessage
from maild.rules import Decision, MessageFacts, RuleSet, load_rules
from maild.senderauth import SenderTrust, aligned, vouches


@dataclass(frozen=True)
class SlaPolicy:
    name: str
    first_response: timedelta
    next_response: timedelta | None


@dataclass(frozen=True)
class Automation:
    """Everything loaded at start that decisions need."""

    rules: RuleSet
    macros: MacroLibrary
    replies: MacroLibrary
    calendar: BusinessCalendar
    timezone: str
    policies: dict[str, SlaPolicy]
    settings: AutoReplyConfig
    own_addresses: frozenset[str]
    warn_fraction: float = 0.8
    sender_trust: SenderTrust = SenderTrust()  # whose Authentication-Results to believe
    timed: tuple[TimedAutomation, ...] = ()  # `[[automation]]`: maild.escalation


def load_automation(config: Config) -> Automation:
    """Load rules, time-based automations, macros and auto-reply templates; raise on
    the first error."""
    policies = {name: SlaPolicy(name, parse_duration(p.first_response),
                                parse_duration(p.next_response) if p.next_response else None)
                for name, p in config.sla_policies.items()}
    macros = load_macros(config.macros_dir())
    replies = load_macros(config.templates_dir() / "autoreply")
    rules = load_rules(config.rules_dir(), sla_policies=set(policies),
                       templates=replies.names(), macros=macros.names())
    calendar = BusinessCalendar(config.sla.timezone, config.sla.business_hours,
                                config.sla.holidays)
    own = frozenset(mb.address.lower() for mb in config.mailboxes)
    timed = load_automations(config.rules_dir(), macros.names())
    return Automation(rules, macros, replies, calendar, config.sla.timezone, policies,
                      config.autoreply, own, config.sla.warn_fraction,
                      SenderTrust(config.sender_auth.trusted_authserv_id), timed)


@dataclass(frozen=True)
class Plan:
    verdict: Verdict
    language: str
    decision: Decision
    suggestions: tuple[dict[str, Any], ...]
    sla_policy: str
    sla_due_at: datetime | None
    eta_text: str | None
    auto_reply: bool
    skip_reason: str | None
    reply_to: str
    classification: Classification | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "auto_submitted": {"automated": self.verdict.automated, "reason": self.verdict.reason,
                               "description": self.verdict.description},
            "classification": _classification_dict(self.classification),
            "language": self.language,
            "matched_rules": list(self.decision.matched),
            "actions": self.decision.actions(),
            "sla": {"policy": self.sla_policy,
                    "due_at": self.sla_due_at.isoformat() if self.sla_due_at else None},
            "auto_reply": {"send": self.auto_reply, "skip_reason": self.skip_reason,
                           "template": self.decision.auto_reply_template,
                           "to": self.reply_to, "eta": self.eta_text},
            "suggested_macros": list(self.suggestions),
        }


def _classification_dict(c: Classification | None) -> dict[str, Any] | None:
    if c is None:
        return None
    return {"sender": c.sender, "kind": c.kind, "reason": c.reason,
            "description": c.description}


def reply_address(parsed: ParsedMessage) -> str:
    return parsed.reply_to[0].addr if parsed.reply_to else parsed.from_addr


def _suggestions(auto: Automation, text: str, language: str,
                 decision: Decision) -> tuple[dict[str, Any], ...]:
    """The macros to offer, best first: a rule's suggestions rank by the same text score
    as the rest (`source` says who suggested it)."""
    rule = f"rule:{decision.source_of('suggest')}"
    ranked = suggest_macros(text, language, auto.macros, limit=3,  # it strips the quotes
                            prefer=decision.suggest)
    best = {s.name: s for s in reversed(ranked)}  # one per name: its best language
    return tuple({"name": s.name, "score": s.score,
                  "source": rule if s.name in decision.suggest else "bm25",
                  "matched_terms": list(s.matched_terms)} for s in ranked if best[s.name] is s)


def _skip_reason(auto: Automation, verdict: Verdict, decision: Decision,
                 is_new: bool, recipient: str, age: timedelta) -> str | None:
    if not auto.settings.enabled:
        return "disabled in config (autoreply.enabled = false)"
    if age > timedelta(hours=auto.settings.max_age_hours):
        return f"too old: arrived {int(age.total_seconds() // 3600)} h ago " \
               f"(autoreply.max_age_hours = {auto.settings.max_age_hours})"
    if verdict.automated:
        return f"loop-guard:{verdict.reason}"
    if decision.spam or decision.ignore:
        return f"rule:{decision.source_of('spam' if decision.spam else 'ignore')} " \
               f"({'spam' if decision.spam else 'ignore'})"
    if not decision.auto_reply:
        source = decision.source_of("auto_reply")
        return "reply to an existing ticket" if source == "default" and not is_new \
            else f"rule:{source} (auto_reply = false)"
    if not recipient:
        return "no address to reply to"
    return None


def reply_to_reason(auto: Automation, parsed: ParsedMessage, recipient: str) -> str | None:
    """Why the ETA reply must not go to a Reply-To at another domain than From: anyone
    can write any From and Reply-To, so unless the trusted server vouches for From's
    domain, maild would be mailing an address of the sender's choosing."""
    sender_domain = parsed.from_addr.rpartition("@")[2]
    reply_domain = recipient.rpartition("@")[2]
    if not parsed.reply_to or not sender_domain or \
            aligned(sender_domain, reply_domain) or aligned(reply_domain, sender_domain):
        return None
    verdict = vouches(auto.sender_trust, parsed, parsed.from_addr)
    if verdict.ok:
        return None
    return f"reply-to-unauthenticated (Reply-To at {reply_domain}, From at {sender_domain}, " \
           f"and {verdict.reason})"


def plan_message(auto: Automation, parsed: ParsedMessage, *, mailbox: str, is_new: bool,
                 previous_tickets: int, arrived_at: datetime,
                 now: datetime | None = None, suggest: bool = True,
                 classification: Classification | None = None) -> Plan:
    """The Plan for `parsed`; `suggest=False` leaves the macro suggestions out (ingest
    stores them on new tickets only, and ranking them is a third of the planning).
    `classification`: the one ingest stored on the message (with the team's
    addresses); without it the message is classified here with maild's own only."""
    if classification is None:
        classification = classify(parsed, GuardContext(own_addresses=auto.own_addresses))
    verdict = verdict_of(classification)
    language = detect_language(own_words(parsed.text), auto.settings.default_language) \
        if parsed.language is None else parsed.language or auto.settings.default_language
    facts = MessageFacts(message=parsed, mailbox=mailbox, is_new_ticket=is_new,
                         previous_tickets=previous_tickets, language=language,
                         in_business_hours=auto.calendar.is_open(arrived_at))
    decision = auto.rules.evaluate(facts)
    policy = auto.policies.get(decision.sla_policy) or auto.policies["default"]
    due = auto.calendar.add(arrived_at, policy.first_response) if is_new else None
    eta = describe_eta(due, policy.first_response, language, auto.timezone,
                       arrived_at) if due else None
    recipient = reply_address(parsed)
    skip = _skip_reason(auto, verdict, decision, is_new, recipient,
                        (now or arrived_at) - arrived_at) or \
        reply_to_reason(auto, parsed, recipient)
    suggestions = _suggestions(auto, parsed.text, language, decision) if suggest else ()
    return Plan(verdict, language, decision, suggestions, policy.name, due, eta, skip is None,
                skip, recipient, classification)
