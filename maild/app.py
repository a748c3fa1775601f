"""Build maild's services from a Config: engine, sessions, clock, pollers.

The one place where configuration turns into objects; every service gets what
it needs passed in (no globals). It does no mail processing itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from maild import smtp
from maild.actions import AutomationHandler, HistoryHandler
from maild.auth.base import TokenSource
from maild.automation import Automation, load_automation
from maild.classify import ClassifyContext
from maild.clock import Clock, SystemClock
from maild.config import Config, MailboxConfig, OAuth2Config, read_secret
from maild.errors import MailboxError, MaildError
from maild.history import HistoryLane
from maild.ingest import Ingestor, MessageHandler
from maild.locks import mailbox_lock
from maild.mailbox import ImapSettings, MailboxClient
from maild.outbox import OutboxSender, RetryPolicy
from maild.parse import ParseLimits
from maild.parsepool import ParsePool
from maild.poller import Poller
from maild.routing import RouteContext
from maild.smtp import SmtpSettings
from maild.store.db import current_revision, head_revision, make_engine, make_sessionmaker


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

    def require_schema(self) -> None:
        """Refuse to work on a database that is not at the latest migration."""
        current, head = current_revision(self.engine), head_revision()
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

    def ingestor(self, mb: MailboxConfig) -> Ingestor:
        auto = self.automation() if self.with_rules else None
        handlers = self._handlers(auto, mb) if auto else []
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

    def _handlers(self, auto: Automation, mb: MailboxConfig) -> list[MessageHandler]:
        """Command mail first (agents only), then rules/ETA (not for commands), drafts."""
        from maild.commands import CommandHandler, UnlessCommandMail
        from maild.drafts import DraftHandler

        agents = self.config.agents
        return [CommandHandler(auto, self.clock, agents),
                UnlessCommandMail(AutomationHandler(auto, self.clock), agents),
                DraftHandler(self.clock, enabled=mb.drafts, agents=agents)]

    def smtp_settings(self) -> SmtpSettings | None:
        s = self.config.smtp
        if s is None:
            return None
        reused = self.config.mailboxes[0].oauth2
        tokens = self.token_source(s.oauth2, "mailbox.oauth2" if s.oauth2 is reused
                                   else "smtp.oauth2", s.username or "")
        password = None if tokens else read_secret(s, self.config, "smtp", self.environ)
        return SmtpSettings(s.host, s.port, s.security, s.username, password,
                            str(self.config.resolve(s.ca_file)) if s.ca_file else None,
                            float(s.timeout_seconds), token_source=tokens)

    def outbox_sender(self) -> OutboxSender | None:
        settings = self.smtp_settings()
        if settings is None:
            return None
        o = self.config.outbox
        policy = RetryPolicy(o.max_attempts, timedelta(seconds=o.retry_base_seconds),
                             timedelta(seconds=o.retry_max_seconds))
        return OutboxSender(self.sessions, self.clock, partial(smtp.send, settings),
                            own_addresses=self.own_addresses(), policy=policy,
                            append_sent=self._append_sent,
                            window_days=self.config.threading.window_days)

    def _append_sent(self, raws: Sequence[bytes]) -> None:
        """Copy sent mail into the first mailbox's Sent folder, marked \\Seen."""
        mb = self.config.mailboxes[0]
        with MailboxClient(self.imap_settings(0)) as client:
            folder = mb.sent_folder or client.find_special_folder("\\Sent")
            if folder is None:
                raise MailboxError(f"{mb.address}: no Sent folder to copy sent mail into")
            for raw in raws:
                client.append(folder, raw, ["\\Seen"], self.clock.now())

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
                      lock=partial(mailbox_lock, self.engine, mb.address), history=history)


def build_app(config: Config, clock: Clock | None = None,
              environ: Mapping[str, str] | None = None) -> App:
    import os

    engine = make_engine(config.database.url, config.path.parent)
    return App(config, engine, make_sessionmaker(engine), clock or SystemClock(),
               os.environ if environ is None else environ)
