"""Command mail: a configured agent mails the support address to act on a ticket.

The subject carries `[#ID]`; the first non-empty lines are commands:
`#macro NAME`, `#status solved|pending|open`, `#tag NAME`, `#assign AGENT`.
Every line is checked before anything happens (no half-applied commands);
then the macro goes to the customer through the outbox as a human reply, the
rest is applied with events whose actor is the agent's address, and the agent
gets a short automatic confirmation listing what was done or what was wrong.

Mail from anyone not configured as an agent is never a command: it stays
ordinary text on its ticket. `is_command_mail` is the test the lead uses to
skip the automation (rules, ETA reply) and draft handlers for command mail;
`CommandHandler` must run FIRST in the ingest handler list.

The From header proves nothing (anyone can write `From: agent@company`): a
command is carried out only when the receiving server vouches for the agent's
domain (`maild.senderauth`: the topmost Authentication-Results header from
`[sender_auth] trusted_authserv_id` with dkim or dmarc pass aligned with it).
Without a trusted server every command is refused. A refused command changes
nothing and sends nothing (no confirmation, no error: a reply to a forged sender
is backscatter); it is recorded as a `command_refused` event with the reason and
a log line. The message itself stays where routing stored it: an agent's note
(`auto`, outside every count) on the ticket it threaded to, as command mail is.
This module does no I/O.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from maild.automation import Automation
from maild.clock import Clock
from maild.compose import compose, reply_subject
from maild.errors import MaildError
from maild.ingest import MessageHandler
from maild.macros import MacroLibrary
from maild.outbox import enqueue
from maild.parse import ParsedMessage
from maild.replying import (
    AGENT_STATUSES,
    Agent,
    TicketChange,
    apply_change,
    prepare_reply,
    send_reply,
)
from maild.routing import is_automatic
from maild.senderauth import vouches
from maild.store import repo
from maild.store.after_commit import log_after_commit
from maild.store.models import Event, Mailbox, Ticket
from maild.threads import ticket_tags
from maild.tickets import StoredMessage

log = logging.getLogger("maild.commands")
VERBS: tuple[str, ...] = ("macro", "status", "tag", "assign")
SINGLE: frozenset[str] = frozenset({"macro", "status", "assign"})
_LINE_RE = re.compile(r"#(\S+)\s*(.*)")
_START_RE = re.compile(r"#[A-Za-z]")
_TAG_RE = re.compile(r"[^\s,#]{1,64}")
#: Ticket fields storing a message as customer mail may change (tickets.py, sla.py).
_CUSTOMER_EFFECTS = ("status", "solved_at", "last_customer_at", "pending_since",
                     "sla_due_at", "sla_warn_at")
#: Events that storing it may add besides `joined`.
_CUSTOMER_EVENTS = frozenset({"reopened", "customer_replied", "status", "sla_resumed"})


@dataclass(frozen=True)
class Command:
    verb: str  # macro | status | tag | assign
    arg: str
    line: int


@dataclass(frozen=True)
class CommandScript:
    """The parsed command lines and every syntax error, one line each."""

    commands: tuple[Command, ...] = ()
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class CommandPlan:
    """What a valid script will do; `errors` non-empty means: do nothing."""

    macro: str | None = None
    change: TicketChange = field(default_factory=TicketChange)
    errors: tuple[str, ...] = ()


def valid_tag(tag: str) -> bool:
    """A tag as command mail and `maild tickets set` accept it: no space, comma or #."""
    return bool(_TAG_RE.fullmatch(tag))


def normalize_agents(agents: Mapping[str, str]) -> dict[str, str]:
    """Agent address (lower case) -> display name."""
    return {addr.strip().lower(): name for addr, name in agents.items()}


def command_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of the leading `#` lines; blank lines are skipped."""
    out: list[tuple[int, str]] = []
    for number, line in enumerate(text.replace("\r\n", "\n").split("\n"), start=1):
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("#"):
            break
        out.append((number, stripped))
    return out


def is_command_mail(parsed: ParsedMessage, agents: Mapping[str, str]) -> bool:
    """True for command mail: From a configured agent, not automatic, `[#ID]` in the
    subject, and its first non-empty line starts with `#` and a letter.

    The lead wires this to skip the automation and draft handlers for the message.
    """
    if parsed.from_addr.lower() not in normalize_agents(agents) or is_automatic(parsed):
        return False
    lines = command_lines(parsed.text)
    return bool(ticket_tags(parsed.subject) and lines and _START_RE.match(lines[0][1]))


def parse_line(number: int, line: str) -> tuple[list[Command], str | None]:
    """The command(s) on one `#` line, or an error naming the line."""
    found = _LINE_RE.fullmatch(line)
    verb = found.group(1).lower() if found else ""
    arg = found.group(2).strip() if found else ""
    if verb not in VERBS:
        known = ", ".join(f"#{v}" for v in VERBS)
        return [], f"line {number}: unknown command #{verb} (known: {known})"
    if not arg:
        return [], f"line {number}: #{verb} needs an argument"
    if verb == "tag":
        tags = [t for t in re.split(r"[\s,]+", arg) if t]
        if not all(_TAG_RE.fullmatch(t) for t in tags):
            return [], f"line {number}: bad tag in {arg!r}"
        return [Command("tag", t, number) for t in tags], None
    if len(arg.split()) > 1:
        return [], f"line {number}: #{verb} takes one argument, got {arg!r}"
    if verb == "status" and arg.lower() not in AGENT_STATUSES:
        return [], f"line {number}: bad status {arg!r} (use {'|'.join(AGENT_STATUSES)})"
    return [Command(verb, arg.lower() if verb == "status" else arg, number)], None


def parse_commands(text: str) -> CommandScript:
    """Parse the leading command lines of `text`, collecting every error."""
    commands: list[Command] = []
    errors: list[str] = []
    for number, line in command_lines(text):
        parsed, error = parse_line(number, line)
        commands += parsed
        if error:
            errors.append(error)
    seen: dict[str, Command] = {}
    for cmd in commands:
        first = seen.setdefault(cmd.verb, cmd)
        if cmd.verb in SINGLE and first is not cmd and first.arg != cmd.arg:
            errors.append(f"line {cmd.line}: a second #{cmd.verb} (line {first.line} "
                          f"already says {first.arg!r})")
    if not commands and not errors:
        errors.append("no commands found")
    return CommandScript(tuple(commands), tuple(errors))


def resolve_agent(value: str, agents: Mapping[str, str], sender: str) -> str | None:
    """An agent's address from 'me', an address or a display name; None if unknown."""
    table = normalize_agents(agents)
    wanted = value.strip().lower()
    if wanted == "me":
        return sender.lower()
    if wanted in table:
        return wanted
    by_name = [addr for addr, name in table.items() if name.strip().lower() == wanted]
    return by_name[0] if len(by_name) == 1 else None


def plan_commands(script: CommandScript, *, macros: MacroLibrary, agents: Mapping[str, str],
                  sender: str) -> CommandPlan:
    """Check the script against the macros and agents; nothing is changed."""
    errors = list(script.errors)
    values = {c.verb: c for c in script.commands}
    macro = values.get("macro")
    if macro is not None and macro.arg not in macros.names():
        errors.append(f"line {macro.line}: unknown macro {macro.arg!r}")
    assign = values.get("assign")
    assignee = resolve_agent(assign.arg, agents, sender) if assign else None
    if assign is not None and assignee is None:
        errors.append(f"line {assign.line}: unknown agent {assign.arg!r}")
    status = values.get("status")
    tags = tuple(dict.fromkeys(c.arg for c in script.commands if c.verb == "tag"))
    change = TicketChange(status=status.arg if status else None, tags=tags, assignee=assignee)
    return CommandPlan(macro.arg if macro else None, change, tuple(errors))


class CommandHandler:
    """Ingest handler for command mail; put it FIRST in the handler list."""

    name = "commands"

    def __init__(self, automation: Automation, clock: Clock, agents: Mapping[str, str]) -> None:
        self.auto = automation
        self.clock = clock
        self.agents = normalize_agents(agents)

    def handle(self, session: Session, stored: StoredMessage, parsed: ParsedMessage) -> None:
        if stored.outbound or not is_command_mail(parsed, self.agents):
            return
        verdict = vouches(self.auto.sender_trust, parsed, parsed.from_addr)
        if not verdict.ok:
            self._refuse(session, stored, parsed, verdict.reason)
            return
        if not stored.new_ticket:
            undo_customer_effects(session, stored)  # before anything flushes
        # An instruction to maild: neither a customer message nor an agent reply, so
        # FRT, waiting times and reply targets must not see it (they skip auto rows).
        stored.row.auto = True
        actor = parsed.from_addr.lower()
        wanted = ticket_tags(parsed.subject)[0]
        ticket = session.get(Ticket, wanted)
        if ticket is None or ticket.mailbox_id != stored.row.mailbox_id:
            lines, ok, ticket_id = [f"there is no ticket #{wanted}"], False, stored.ticket.id
        else:
            rehome(session, stored, ticket)
            lines, ok = self._run(session, ticket, parsed, actor)
            ticket_id = ticket.id
        now = self.clock.now()
        kind = "command" if ok else "command_rejected"
        repo.add_event(session, ticket_id, now, kind, actor=actor,
                       message_id=parsed.message_id, **{"done" if ok else "errors": lines})
        log_after_commit(session, log, logging.INFO, "ticket #%d: command mail %s from %s %s: %s",
                         ticket_id, parsed.message_id, actor, "done" if ok else "refused",
                         "; ".join(lines))
        self._confirm(session, stored.row.mailbox_id, ticket_id, parsed, lines, ok)

    def _refuse(self, session: Session, stored: StoredMessage, parsed: ParsedMessage,
                reason: str) -> None:
        """Record the refusal, on the ticket the command names if there is one (where an
        agent looks), else where the message was stored; change and send nothing."""
        claimed = parsed.from_addr.lower()
        wanted = ticket_tags(parsed.subject)[0]
        target = session.get(Ticket, wanted)
        on = target.id if target is not None and \
            target.mailbox_id == stored.row.mailbox_id else stored.ticket.id
        repo.add_event(session, on, self.clock.now(), "command_refused", actor=claimed,
                       message_id=parsed.message_id, reason=reason,
                       stored_on=stored.ticket.id)
        log_after_commit(session, log, logging.WARNING,
                         "command mail %s claiming to be from %s for ticket #%d refused (kept "
                         "as a note on ticket #%d): %s", parsed.message_id, claimed, wanted,
                         stored.ticket.id, reason)

    def _run(self, session: Session, ticket: Ticket, parsed: ParsedMessage,
             actor: str) -> tuple[list[str], bool]:
        plan = plan_commands(parse_commands(parsed.text), macros=self.auto.macros,
                             agents=self.agents, sender=actor)
        if plan.errors:
            return list(plan.errors), False
        now = self.clock.now()
        try:
            with session.begin_nested():
                return execute_plan(session, self.auto, ticket, plan, now=now,
                                    agent=Agent(self.agents.get(actor, actor), actor)), True
        except (MaildError, ValueError) as exc:
            return [str(exc)], False

    def _confirm(self, session: Session, mailbox_id: int, ticket_id: int,
                 parsed: ParsedMessage, lines: Sequence[str], ok: bool) -> None:
        mailbox = session.get_one(Mailbox, mailbox_id)
        now = self.clock.now()
        out = compose(sender=mailbox.address, sender_name=self.auto.settings.sender_name,
                      to=parsed.from_addr, to_name=self.agents.get(parsed.from_addr.lower(), ""),
                      subject=reply_subject(parsed.subject, ticket_id),
                      body=confirmation_body(ticket_id, lines, ok), date=now,
                      ticket_id=ticket_id, in_reply_to=parsed.message_id,
                      references=[*parsed.references, parsed.message_id], automatic=True)
        enqueue(session, out, mailbox_id=mailbox.id, ticket_id=ticket_id,
                kind="command_reply", now=now, auto=True)


class UnlessCommandMail:
    """Wrap an ingest handler so that it skips command mail, e.g.
    `UnlessCommandMail(AutomationHandler(...), agents)`: no rules, no ETA reply."""

    def __init__(self, inner: MessageHandler, agents: Mapping[str, str]) -> None:
        self.inner = inner
        self.name = inner.name
        self.agents = normalize_agents(agents)

    def handle(self, session: Session, stored: StoredMessage, parsed: ParsedMessage) -> None:
        if stored.outbound or not is_command_mail(parsed, self.agents):
            self.inner.handle(session, stored, parsed)


def execute_plan(session: Session, auto: Automation, ticket: Ticket, plan: CommandPlan, *,
                 now: datetime, agent: Agent) -> list[str]:
    """Carry out a checked plan: the macro (with its actions), then the rest."""
    if plan.macro is None:
        return apply_change(session, ticket, plan.change, now=now, actor=agent.email,
                            calendar=auto.calendar) or ["nothing to change"]
    reply = prepare_reply(session, auto, ticket.id, plan.macro, agent=agent, now=now)
    sent = send_reply(session, reply, now=now, actor=agent.email, change=plan.change,
                      calendar=auto.calendar)
    return [f"macro {reply.macro.name} ({reply.macro.language}) sent to {sent.to}",
            *sent.done]


def confirmation_body(ticket_id: int, lines: Sequence[str], ok: bool) -> str:
    head = (f"Done on ticket #{ticket_id}:" if ok else
            f"Nothing was done on ticket #{ticket_id}; fix the commands and send again:")
    return "\n".join([head, "", *(f"- {line}" for line in lines), ""])


def undo_customer_effects(session: Session, stored: StoredMessage) -> None:
    """Take back what storing the command as customer mail did to its ticket
    (last_customer_at, a reopen and its SLA resume). Nothing has been flushed
    since the message's savepoint began, so the attribute history holds the
    old values and the new events are still pending: drop them."""
    ticket = stored.ticket
    state = inspect(ticket)
    for attr in _CUSTOMER_EFFECTS:
        history = state.attrs[attr].history
        if history.added and history.deleted:
            setattr(ticket, attr, history.deleted[0])
    for obj in list(session.new):
        if isinstance(obj, Event) and obj.ticket_id == ticket.id and \
                obj.kind in _CUSTOMER_EVENTS:
            session.expunge(obj)


def rehome(session: Session, stored: StoredMessage, target: Ticket) -> None:
    """Move the command mail onto `target` when threading put it elsewhere; a
    ticket it opened (the agent is no participant of `target`) is removed."""
    if stored.ticket.id == target.id:
        return
    stray = stored.ticket
    stored.row.ticket = target
    session.flush()
    repo.add_event(session, target.id, stored.row.arrived_at, "joined",
                   message_id=stored.row.message_id, reason="command-mail", direction="in")
    if stored.new_ticket:
        for event in session.scalars(select(Event).where(Event.ticket_id == stray.id)):
            session.delete(event)
        session.delete(stray)
        session.flush()
