"""Build maild's services from a Config: engine, sessions, clock, pollers.

The one place where configuration turns into objects; every service gets what
it needs passed in (no globals). It does no mail processing itself.
"""

from __future__ import annotations

import email.policy
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import timedelta
from email.parser import HeaderParser
from email.utils import parseaddr
from functools import partial

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from maild import smtp
from maild.actions import AutomationHandler, HistoryHandler, PlanObserver
from maild.auth.base import TokenSource
from maild.automation import Automation, load_automation
from maild.calendar import BusinessCalendar
from maild.classify import ClassifyContext
from maild.clock import Clock, SystemClock
from maild.config import Config, MailboxConfig, OAuth2Config, read_secret
from maild.errors import MailboxError, MaildError
from maild.history import HistoryLane
from maild.ingest import Ingestor, MessageHandler
from maild.locks import mailbox_lock
from maild.mailbox import ImapSettings, MailboxClient
from maild.mailbox_send import routed_connections, routed_send
from maild.metrics import Metrics
from maild.outbox import OutboxSender, RetryPolicy
from maild.parse import ParseLimits
from maild.parsepool import ParsePool
from maild.poller import Poller
from maild.pollstate import PollStates
from maild.routing import RouteContext
from maild.sending import SendFn
from maild.smtp import SmtpSettings
from maild.store.db import (
    DatabaseError,
    check_database_path,
    current_revision,
    describe_error,
    head_revision,
    make_engine,
    make_sessionmaker,
)


@dataclass
class App:
    config: Config
    engine: Engine
    sessions: sessionmaker[Session]
    clock: Clock
    environ: Mapping[str, str]
    with_rules: bool = True
    _automation: Automation | None = None
    _tokens: dict[str, TokenSource] = field(default_factory=dict)
    _copied: set[str] = field(default_factory=set)  # in Sent, not yet marked (see _append_sent)
    polls: PollStates = field(default_factory=PollStates)  # pollers' state, for /healthz
    metrics: Metrics = field(default_factory=Metrics)  # /metrics; build_app attaches it

    def require_schema(self) -> None:
        """Refuse to work on a database that is not at the latest migration."""
        check_database_path(self.engine)
        try:
            current = current_revision(self.engine)
        except SQLAlchemyError as exc:
            raise DatabaseError(describe_error(self.engine, exc)) from None
        head = head_revision()
        if current != head:
            raise MaildError(f"database is at revision {current or 'none'}, code needs {head}: "
                             "run `maild db upgrade`")

    def imap_settings(self, index: int) -> ImapSettings:
        mb = self.config.mailboxes[index]
        where = "mailbox" if len(self.config.mailboxes) == 1 else f"mailbox[{index}]"
        tokens = self.token_source(mb.oauth2, f"{where}.oauth2", mb.username)
        password = "" if tokens else read_secret(mb, self.config, where, self.environ) or ""
        return ImapSettings(mb.imap_host, mb.imap_port, mb.security, mb.username, password,
                            str(self.config.resolve(mb.ca_file)) if mb.ca_file else None,
                            float(mb.timeout_seconds), token_source=tokens)

    def token_source(self, oauth2: OAuth2Config | None, where: str,
                     subject: str) -> TokenSource | None:
        """One cached token source per oauth2 table and login, kept for the App's life (so
        tokens are reused across connections); None for password login."""
        if oauth2 is None:
            return None
        key = repr(oauth2) + (f" {subject}" if oauth2.flow == "service_account" else "")
        if key not in self._tokens:
            from maild.auth.sources import token_source

            self._tokens[key] = token_source(oauth2, self.config, where, subject, self.environ)
        return self._tokens[key]

    def own_addresses(self) -> tuple[str, ...]:
        return tuple(mb.address.lower() for mb in self.config.mailboxes)

    def automation(self) -> Automation:
        if self._automation is None:
            self._automation = load_automation(self.config)
        return self._automation

    def survey_secret(self, session: Session) -> str:
        """The secret that signs survey links (`[csat]`; else generated, in the database)."""
        from maild.surveys.secret import survey_secret

        return survey_secret(session, self.config, self.environ)

    def calendar(self) -> BusinessCalendar:
        """The SLA calendar (the automation's, without loading rules when not loaded)."""
        if self._automation is not None:
            return self._automation.calendar
        sla = self.config.sla
        return BusinessCalendar(sla.timezone, sla.business_hours, sla.holidays)

    def ingestor(self, mb: MailboxConfig, observe: PlanObserver | None = None) -> Ingestor:
        """The ingest pipeline of `mb`; `observe` is told every Plan (the dry run)."""
        auto = self.automation() if self.with_rules else None
        handlers = self._handlers(auto, mb, observe) if auto else []
        return Ingestor(self.sessions, self.clock, mb.address, own_addresses=self.own_addresses(),
                        window_days=self.config.threading.window_days, handlers=handlers,
                        calendar=auto.calendar if auto else None,
                        limits=ParseLimits(self.config.limits.max_message_bytes,
                                           self.config.limits.max_mime_parts),
                        reopen_window_days=self.config.sla.reopen_window_days,
                        routing=self.routing(),
                        history_handlers=[HistoryHandler(auto, self.clock)] if auto else [])

    def routing(self) -> RouteContext:
        """Who is who when mail is classified: our addresses, the agents, the company."""
        from maild.commands import is_command_mail

        own = frozenset(self.own_addresses())
        agents = self.config.agents
        team = ClassifyContext(own_addresses=own, agent_addresses=frozenset(agents),
                               company_domains=frozenset(self.config.team.domains))
        return RouteContext(own, team, partial(is_command_mail, agents=agents))

    def _handlers(self, auto: Automation, mb: MailboxConfig,
                  observe: PlanObserver | None = None) -> list[MessageHandler]:
        """Survey answers (routed apart: they only record a score), command mail (agents
        only), then rules/ETA (not for commands), drafts."""
        from maild.commands import CommandHandler, UnlessCommandMail
        from maild.drafts import DraftHandler
        from maild.surveys.answers import SurveyAnswerHandler

        agents = self.config.agents
        return [SurveyAnswerHandler(self.survey_secret, self.clock),
                CommandHandler(auto, self.clock, agents),
                UnlessCommandMail(AutomationHandler(auto, self.clock, observe), agents),
                DraftHandler(self.clock, enabled=mb.drafts, agents=agents, macros=auto.macros)]

    def mailbox_index(self, address: str) -> int:
        """The configured mailbox with this address (mail it sends), else the first."""
        wanted = address.strip().lower()
        for i, mb in enumerate(self.config.mailboxes):
            if mb.address.lower() == wanted:
                return i
        return 0

    def smtp_settings(self, index: int = 0) -> SmtpSettings | None:
        """How mailbox `index` sends: its own [mailbox.smtp], else [smtp]; None if neither."""
        mb = self.config.mailboxes[index]
        where = "mailbox" if len(self.config.mailboxes) == 1 else f"mailbox[{index}]"
        s, owner, name = (mb.smtp, mb, f"{where}.smtp") if mb.smtp is not None else \
            (self.config.smtp, self.config.mailboxes[0], "smtp")
        if s is None:
            return None
        tokens = self.token_source(s.oauth2, f"{where}.oauth2" if s.oauth2 is owner.oauth2
                                   else f"{name}.oauth2", s.username or "")
        password = None if tokens else read_secret(s, self.config, name, self.environ)
        return SmtpSettings(s.host, s.port, s.security, s.username, password,
                            str(self.config.resolve(s.ca_file)) if s.ca_file else None,
                            float(s.timeout_seconds), token_source=tokens)

    def outbox_sender(self) -> OutboxSender | None:
        """The outbox sender, or None when no mailbox can send at all."""
        count = len(self.config.mailboxes)
        settings = [self.smtp_settings(i) for i in range(count)]
        if all(s is None for s in settings):
            return None
        o = self.config.outbox
        policy = RetryPolicy(o.max_attempts, timedelta(seconds=o.retry_base_seconds),
                             timedelta(seconds=o.retry_max_seconds))
        sends = [partial(smtp.send, s) if s is not None else None for s in settings]
        send = routed_send(sends.__getitem__, self.mailbox_index)  # through its own mailbox

        def connect_for(index: int) -> AbstractContextManager[SendFn] | None:
            chosen = settings[index]
            return smtp.connection(chosen) if chosen is not None else None

        # one reused connection per mailbox for a whole outbox pass
        connect = partial(routed_connections, connect_for, self.mailbox_index)
        return OutboxSender(self.sessions, self.clock, send, connect=connect,
                            own_addresses=self.own_addresses(), policy=policy,
                            append_sent=self._append_sent,
                            window_days=self.config.threading.window_days,
                            calendar=self.calendar())

    def _append_sent(self, raws: Sequence[bytes]) -> None:
        """Copy sent mail into the Sent folder of the mailbox it came from, marked \\Seen.
        A copy made before another mailbox failed is not made again on the retry."""
        groups: dict[int, list[tuple[str, bytes]]] = {}
        for raw in raws:
            sender, message_id = _sender_and_id(raw)
            if message_id not in self._copied:
                groups.setdefault(self.mailbox_index(sender), []).append((message_id, raw))
        for index, items in sorted(groups.items()):
            mb = self.config.mailboxes[index]
            with MailboxClient(self.imap_settings(index)) as client:
                folder = mb.sent_folder or client.find_special_folder("\\Sent")
                if folder is None:
                    raise MailboxError(f"{mb.address}: no Sent folder to copy sent mail into")
                for message_id, raw in items:
                    client.append(folder, raw, ["\\Seen"], self.clock.now())
                    self._copied.add(message_id)
        self._copied.clear()  # all copied: the outbox marks them now

    def poller(self, index: int,
               client_factory: Callable[[], MailboxClient] | None = None) -> Poller:
        mb = self.config.mailboxes[index]
        factory = client_factory or partial(MailboxClient, self.imap_settings(index))
        ingestor = self.ingestor(mb)
        h = self.config.history
        history = HistoryLane(ingestor,
                              max_age=timedelta(hours=self.config.autoreply.max_age_hours),
                              import_since=mb.import_since, chunk_seconds=h.chunk_seconds,
                              batch_size=mb.batch_size,
                              pool=ParsePool(ingestor.limits, h.workers),
                              progress_seconds=h.progress_seconds)
        return Poller(factory, ingestor, inbox=mb.inbox_folder, sent=mb.sent_folder,
                      batch_size=mb.batch_size, mark_seen=mb.mark_seen,
                      lock=partial(mailbox_lock, self.engine, mb.address),
                      state=self.polls.mailbox(mb.address, float(mb.poll_seconds)),
                      observe_batch=partial(self.metrics.observe_batch, mb.address),
                      history=history)


def _sender_and_id(raw: bytes) -> tuple[str, str]:
    """The From address and Message-ID of a composed message (headers only)."""
    head = raw.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")  # SMTPUTF8 mail: UTF-8
    headers = HeaderParser(policy=email.policy.compat32).parsestr(head)
    return parseaddr(str(headers.get("From", "")))[1], str(headers.get("Message-ID", "")).strip()


def build_app(config: Config, clock: Clock | None = None,
              environ: Mapping[str, str] | None = None) -> App:
    import os

    engine = make_engine(config.database.url, config.path.parent)
    app = App(config, engine, make_sessionmaker(engine), clock or SystemClock(),
              os.environ if environ is None else environ)
    app.metrics.attach(app.sessions, app.engine, app.clock, app.polls)
    return app
