"""`maild check`: a newcomer's checklist, one line per item, each ok or not.

Each check is a small function returning `CheckResult`s; a failing check
never stops the next one. Checks only read and log in; they change nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from maild.app import App
from maild.config import read_secret
from maild.errors import MaildError
from maild.mailbox import MailboxClient
from maild.smtp import SmtpSettings, login_check
from maild.store.db import current_revision, head_revision


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


def check_database(app: App) -> Iterator[CheckResult]:
    try:
        current, head = current_revision(app.engine), head_revision()
    except (SQLAlchemyError, MaildError) as exc:
        yield CheckResult("database", False, f"unreachable: {str(exc).splitlines()[0]}")
        return
    url = app.engine.url.render_as_string(hide_password=True)
    if current == head:
        yield CheckResult("database", True, f"{url} at the latest migration ({head})")
    else:
        yield CheckResult("database", False, f"{url} at {current or 'no schema'}, latest is "
                                             f"{head}: run `maild db upgrade`")


def check_imap(app: App) -> Iterator[CheckResult]:
    for i, mb in enumerate(app.config.mailboxes):
        name = f"imap {mb.address}"
        try:
            with MailboxClient(app.imap_settings(i)) as client:
                caps = client.capabilities()
                sent = mb.sent_folder or client.find_special_folder("\\Sent")
                drafts = mb.drafts_folder or client.find_special_folder("\\Drafts")
                client.select(mb.inbox_folder)
        except MaildError as exc:
            yield CheckResult(name, False, str(exc))
            continue
        yield CheckResult(name, True, f"logged in to {mb.imap_host}:{mb.imap_port} "
                          f"({mb.security}); IDLE {'yes' if 'IDLE' in caps else 'no'}")
        yield CheckResult(f"{name} folders", sent is not None,
                          f"inbox={mb.inbox_folder} sent={sent or 'NOT FOUND (set sent_folder)'} "
                          f"drafts={drafts or 'not found'}")


def smtp_settings(app: App) -> SmtpSettings | None:
    s = app.config.smtp
    if s is None:
        return None
    password = read_secret(s, app.config, "smtp", app.environ)
    return SmtpSettings(s.host, s.port, s.security, s.username, password,
                        str(app.config.resolve(s.ca_file)) if s.ca_file else None,
                        float(s.timeout_seconds))


def check_smtp(app: App) -> Iterator[CheckResult]:
    try:
        settings = smtp_settings(app)
        if settings is None:
            yield CheckResult("smtp", False, "no [smtp] section: maild cannot send replies")
            return
        yield CheckResult("smtp", True, login_check(settings))
    except MaildError as exc:
        yield CheckResult("smtp", False, str(exc))


CHECKS: tuple[Callable[[App], Iterator[CheckResult]], ...] = (
    check_database, check_imap, check_smtp)


def run_checks(app: App, extra: tuple[Callable[[App], Iterator[CheckResult]], ...] = ()
               ) -> list[CheckResult]:
    results = [CheckResult("config", True, f"{app.config.path} is valid")]
    for check in (*CHECKS, *extra):
        results.extend(check(app))
    return results
