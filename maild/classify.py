"""Who wrote a message: a customer, one of the team, or a machine (and which kind).

Interim version built on the loop guards; the marker tables replace it.
"""

from __future__ import annotations

from dataclasses import dataclass

from maild.loopguard import GuardContext, check_message
from maild.parse import ParsedMessage

CUSTOMER, AGENT, MACHINE = "customer", "agent", "machine"
MACHINE_KINDS = ("bounce", "auto-reply", "bulk", "notification", "report")
_KIND = {"report-content": "bounce", "auto-submitted": "auto-reply",
         "vendor-autoreply": "auto-reply", "list-headers": "bulk", "precedence": "bulk",
         "machine-sender": "notification", "empty-return-path": "notification"}


@dataclass(frozen=True)
class ClassifyContext:
    own_addresses: frozenset[str] = frozenset()
    agent_addresses: frozenset[str] = frozenset()
    company_domains: frozenset[str] = frozenset()
    return_path: str | None = None


@dataclass(frozen=True)
class Classification:
    sender: str
    kind: str | None
    reason: str
    description: str
    no_autoreply: str | None = None

    @property
    def machine(self) -> bool:
        return self.sender == MACHINE


def classify(msg: ParsedMessage, ctx: ClassifyContext) -> Classification:
    verdict = check_message(msg, GuardContext(ctx.own_addresses, ctx.return_path))
    if verdict.reason in _KIND:
        return Classification(MACHINE, _KIND[verdict.reason], verdict.reason,
                               verdict.description or "")
    if verdict.reason == "own-address":
        return Classification(AGENT, None, "own-address", "", "own-address")
    local = msg.from_addr.split("+")[0] if "+" in msg.from_addr.split("@")[0] else msg.from_addr
    domain = msg.from_addr.rpartition("@")[2]
    if msg.from_addr in ctx.agent_addresses or local in ctx.agent_addresses:
        return Classification(AGENT, None, "agent-address", "", "agent-address")
    if domain and domain in ctx.company_domains:
        return Classification(AGENT, None, "company-domain", "", "company-domain")
    return Classification(CUSTOMER, None, "human", "", verdict.reason)
