"""Build maild's services from a Config: engine, sessions, clock, pollers.

The one place where configuration turns into objects; every service gets what
it needs passed in (no globals). It does no mail processing itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from maild.clock import Clock, SystemClock
from maild.config import Config, MailboxConfig, read_secret
from maild.errors import MaildError
from maild.ingest import Ingestor
from maild.mailbox import ImapSettings, MailboxClient
from maild.poller import Poller
from maild.store.db import current_revision, head_revision, make_engine, make_sessionmaker


@dataclass
class App:
    config: Config
    engine: Engine
    sessions: sessionmaker[Session]
    clock: Clock
    environ: Mapping[str, str]

    def require_schema(self) -> None:
        """Refuse to work on a database that is not at the latest migration."""
        current, head = current_revision(self.engine), head_revision()
        if current != head:
            raise MaildError(f"database is at revision {current or 'none'}, code needs {head}: "
                             "run `maild db upgrade`")

    def imap_settings(self, index: int) -> ImapSettings:
        mb = self.config.mailboxes[index]
        where = "mailbox" if len(self.config.mailboxes) == 1 else f"mailbox[{index}]"
        password = read_secret(mb, self.config, where, self.environ) or ""
        return ImapSettings(mb.imap_host, mb.imap_port, mb.security, mb.username, password,
                            str(self.config.resolve(mb.ca_file)) if mb.ca_file else None,
                            float(mb.timeout_seconds))

    def own_addresses(self) -> tuple[str, ...]:
        return tuple(mb.address.lower() for mb in self.config.mailboxes)

    def ingestor(self, mb: MailboxConfig) -> Ingestor:
        return Ingestor(self.sessions, self.clock, mb.address, own_addresses=self.own_addresses(),
                        window_days=self.config.threading.window_days)

    def poller(self, index: int,
               client_factory: Callable[[], MailboxClient] | None = None) -> Poller:
        mb = self.config.mailboxes[index]
        factory = client_factory or partial(MailboxClient, self.imap_settings(index))
        return Poller(factory, self.ingestor(mb), inbox=mb.inbox_folder, sent=mb.sent_folder,
                      batch_size=mb.batch_size, mark_seen=mb.mark_seen)


def build_app(config: Config, clock: Clock | None = None,
              environ: Mapping[str, str] | None = None) -> App:
    import os

    engine = make_engine(config.database.url, config.path.parent)
    return App(config, engine, make_sessionmaker(engine), clock or SystemClock(),
               os.environ if environ is None else environ)
