"""`maild check`: a newcomer's checklist, one line per item, each ok or not.

Each check is a small function returning `CheckResult`s; a failing check
never stops the next one. Checks only read and log in; they change nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from maild.app import App
from maild.errors import MaildError
from maild.macros import load_macros, validate_macros
from maild.mailbox import MailboxClient
from maild.rules import validate_all
from maild.smtp import login_check
from maild.store.db import current_revision, head_revision
from maild.store.history import history_progress, importing_summary


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


def check_history(app: App) -> Iterator[CheckResult]:
    """A first run's history import: "importing history: 42%" while it runs (never a
    failure: live mail is answered meanwhile), or how much it imported."""
    try:
        if current_revision(app.engine) != head_revision():
            return
        with app.sessions() as session:
            summary = importing_summary(session)
            rows = history_progress(session)
    except (SQLAlchemyError, MaildError):
        return  # check_database has said why
    if summary is not None:
        yield CheckResult("history", True, f"{summary}; live mail is handled meanwhile")
    elif rows:
        yield CheckResult("history", True, f"history imported ({sum(r.total for r in rows):,} "
                                           "messages)")


def check_oauth2(app: App) -> Iterator[CheckResult]:
    """Token acquisition on its own line, before the logins that use the token."""
    tables = [(f"mailbox[{i}]" if len(app.config.mailboxes) > 1 else "mailbox",
               mb.username, mb.oauth2) for i, mb in enumerate(app.config.mailboxes)]
    smtp = app.config.smtp
    if smtp is not None and smtp.oauth2 is not None and all(
            smtp.oauth2 != o for _, _, o in tables):
        tables.append(("smtp", smtp.username or "", smtp.oauth2))
    for where, login, oauth2 in tables:
        if oauth2 is None:
            continue
        name = f"oauth2 {where} ({oauth2.flow})"
        try:
            tokens = app.token_source(oauth2, f"{where}.oauth2", login)
            if tokens is None:
                continue
            tokens.token()
        except MaildError as exc:
            yield CheckResult(name, False, str(exc))
            continue
        due = max(0, int(tokens.renew_at() - time.monotonic()))
        yield CheckResult(name, True, f"got a token for {login} "
                          f"(scopes {' '.join(oauth2.scopes)}); renewed in {due} s")


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


def check_smtp(app: App) -> Iterator[CheckResult]:
    try:
        settings = app.smtp_settings()
        if settings is None:
            yield CheckResult("smtp", False, "no [smtp] section: maild cannot send replies")
            return
        yield CheckResult("smtp", True, login_check(settings))
    except MaildError as exc:
        yield CheckResult("smtp", False, str(exc))


def check_content(app: App) -> Iterator[CheckResult]:
    """Rules, macros and auto-reply templates, every error on its own line."""
    cfg = app.config
    macros_dir = cfg.resolve(cfg.paths.macros)
    replies_dir = cfg.resolve(cfg.paths.templates) / "autoreply"
    for label, directory in (("macros", macros_dir), ("auto-reply templates", replies_dir)):
        errors = validate_macros(directory)
        for err in errors:
            yield CheckResult(label, False, str(err))
        if not errors:
            yield CheckResult(label, True, f"{directory} is valid")
    try:
        replies = load_macros(replies_dir).names()
        macros = load_macros(macros_dir).names()
    except MaildError:
        replies, macros = set(), None
    rule_errors = validate_all(cfg.resolve(cfg.paths.rules), sla_policies=set(cfg.sla_policies),
                               templates=replies, macros=macros)
    for rerr in rule_errors:
        yield CheckResult("rules", False, str(rerr))
    if not rule_errors:
        yield CheckResult("rules", True, f"{cfg.resolve(cfg.paths.rules)} is valid")


CHECKS: tuple[Callable[[App], Iterator[CheckResult]], ...] = (
    check_content, check_database, check_history, check_oauth2, check_imap, check_smtp)


def run_checks(app: App, extra: tuple[Callable[[App], Iterator[CheckResult]], ...] = ()
               ) -> list[CheckResult]:
    results = [CheckResult("config", True, f"{app.config.path} is valid")]
    for check in (*CHECKS, *extra):
        results.extend(check(app))
    return results
