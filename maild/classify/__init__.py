"""Who wrote an inbound message: a customer, an agent, or a machine (and which kind).

One decision per message, made once at ingest; the loop guard (`maild.loopguard`)
is derived from it. The order:

1. machine markers (`maild.classify.markers`: one table per kind, bounce, report,
   auto-reply, bulk, notification, in that order; the first row that hits names
   the reason and its table the kind). They win over addresses: an agent's
   out-of-office is machine mail;
2. From is one of maild's own addresses: agent, reason `own-address`;
3. From is an `[agents]` address (sub-address `+tag` ignored) or its domain is
   exactly one of the company domains: agent;
4. everyone else: customer, reason `human`.

`no_autoreply` carries a reason that suppresses only the ETA reply without making
the message machine mail: a Reply-To of ours (`own-address`), no usable address to
answer (`no-sender`), `X-Auto-Response-Suppress` asking for none (Exchange stamps
it on human mail sent through groups, so it is no machine marker), and agents.

Pure: reads a `ParsedMessage` and a `ClassifyContext`; no database, network or clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from maild.addresses import usable_address
from maild.classify.markers import TABLES, Marker, hits, reply_targets, unplussed
from maild.parse import ParsedMessage

CUSTOMER, AGENT, MACHINE = "customer", "agent", "machine"
MACHINE_KINDS: Final = ("bounce", "auto-reply", "bulk", "notification", "report")

# Reasons that are no marker: the address rules and the ETA-only suppressions.
DESCRIPTIONS: Final[dict[str, str]] = {
    "own-address": "From or Reply-To is one of maild's own addresses",
    "agent-address": "From is an [agents] address",
    "company-domain": "From is an address at a company domain",
    "human": "written by a person",
    "agent-forward": "an agent forwarded a customer's mail to support",
    "forwarded-by-agent": "an agent forwarded it: the customer did not write to us",
    "recovered-sender": "a sender recovered by hand from filtered: a customer",
    "no-sender": "no usable From address (missing, or mangled like 'Ann x@y.com')",
    "auto-response-suppress": "the sender asked for no auto-reply "
                              "(X-Auto-Response-Suppress All/OOF/AutoReply)",
}
_SUPPRESS_TOKENS = frozenset({"all", "oof", "autoreply"})


@dataclass(frozen=True)
class ClassifyContext:
    """What classification needs besides the message. Addresses lower-case.

    `return_path`: the envelope sender if the caller knows it ("" or "<>" for the
    null sender); None means "read the Return-Path header"."""

    own_addresses: frozenset[str] = frozenset()
    agent_addresses: frozenset[str] = frozenset()
    company_domains: frozenset[str] = frozenset()
    return_path: str | None = None


@dataclass(frozen=True)
class Classification:
    sender: str  # CUSTOMER | AGENT | MACHINE
    kind: str | None  # for machine mail one of MACHINE_KINDS, else None
    reason: str  # the marker (or address rule) that decided
    description: str  # one line for people
    no_autoreply: str | None = None  # suppresses only the ETA reply, see the module doc

    @property
    def machine(self) -> bool:
        return self.sender == MACHINE


def machine_marker(msg: ParsedMessage, ctx: ClassifyContext) -> tuple[str, Marker] | None:
    """(kind, marker) of the first machine marker that hits, or None."""
    for kind, table in TABLES:
        for marker in table:
            if hits(marker, msg, ctx):
                return kind, marker
    return None


def _suppress_requested(msg: ParsedMessage) -> bool:
    """X-Auto-Response-Suppress naming auto-replies; receipts only (DR, NDR, RN) do not."""
    return any({t.lower() for t in re.split(r"[,;\s]+", v) if t} & _SUPPRESS_TOKENS
               for v in msg.header_all("X-Auto-Response-Suppress"))


def _agent_reason(msg: ParsedMessage, ctx: ClassifyContext) -> str | None:
    if not msg.from_addr:
        return None
    sender = unplussed(msg.from_addr)
    if sender in {unplussed(a) for a in ctx.own_addresses}:
        return "own-address"
    if sender in {unplussed(a) for a in ctx.agent_addresses}:
        return "agent-address"
    domain = sender.rpartition("@")[2]
    if domain and domain in {d.lower() for d in ctx.company_domains}:
        return "company-domain"
    return None


def _customer_no_autoreply(msg: ParsedMessage, ctx: ClassifyContext) -> str | None:
    own = {unplussed(a) for a in ctx.own_addresses}
    if any(unplussed(a) in own for a in reply_targets(msg)):
        return "own-address"  # a Reply-To of ours: answering would loop
    if not usable_address(msg.reply_to[0].addr if msg.reply_to else msg.from_addr):
        return "no-sender"
    if _suppress_requested(msg):
        return "auto-response-suppress"
    return None


def classify(msg: ParsedMessage, ctx: ClassifyContext) -> Classification:
    """The one classification of `msg`; see the module doc for the order."""
    found = machine_marker(msg, ctx)
    if found:
        kind, marker = found
        return Classification(MACHINE, kind, marker.name, marker.description)
    agent = _agent_reason(msg, ctx)
    if agent:
        return Classification(AGENT, None, agent, DESCRIPTIONS[agent], no_autoreply=agent)
    return Classification(CUSTOMER, None, "human", DESCRIPTIONS["human"],
                          no_autoreply=_customer_no_autoreply(msg, ctx))


__all__ = ["AGENT", "CUSTOMER", "DESCRIPTIONS", "MACHINE", "MACHINE_KINDS", "Classification",
           "ClassifyContext", "classify", "machine_marker"]
