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
from maild.escalation.loader import collect_automations
from maild.macros import load_macros, validate_macros
from maild.mailbox import MailboxClient
from maild.rules import validate_all
from maild.smtp import login_check
from maild.store.db import current_revision, head_revision, sqlite_path_problem
from maild.store.history import history_progress, importing_summary


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


def check_database(app: App) -> Iterator[CheckResult]:
    problem = sqlite_path_problem(app.engine)
    if problem:
        yield CheckResult("database", False, problem)
        return
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
    """A login to [smtp] (once), and to each mailbox's own [mailbox.smtp]; a mailbox that
    can send through neither is reported."""
    mailboxes = app.config.mailboxes
    if app.config.smtp is None and all(mb.smtp is None for mb in mailboxes):
        yield CheckResult("smtp", False, "no [smtp] section: maild cannot send replies")
        return
    shared_done = False
    for i, mb in enumerate(mailboxes):
        if mb.smtp is None and app.config.smtp is None:
            yield CheckResult(f"smtp {mb.address}", False, "no [mailbox.smtp] and no [smtp]: "
                                                           "its replies cannot be sent")
            continue
        if mb.smtp is None and shared_done:
            continue
        name = f"smtp {mb.address}" if mb.smtp is not None else "smtp"
        shared_done = shared_done or mb.smtp is None
        try:
            settings = app.smtp_settings(i)
            assert settings is not None
            yield CheckResult(name, True, login_check(settings))
        except MaildError as exc:
            yield CheckResult(name, False, str(exc))


def check_content(app: App) -> Iterator[CheckResult]:
    """Rules, macros and auto-reply templates, every error on its own line."""
    cfg = app.config
    macros_dir = cfg.macros_dir()
    replies_dir = cfg.templates_dir() / "autoreply"
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
    rule_errors = validate_all(cfg.rules_dir(), sla_policies=set(cfg.sla_policies),
                               templates=replies, macros=macros)
    rule_errors += collect_automations(cfg.rules_dir(), macros)[1]
    for rerr in rule_errors:
        yield CheckResult("rules", False, str(rerr))
    if not rule_errors:
        yield CheckResult("rules", True, f"{cfg.rules_dir()} is valid")


def check_command_mail(app: App) -> Iterator[CheckResult]:
    """Whether command mail can work, and how to turn it on (it is off by default)."""
    cfg = app.config
    trusted = cfg.sender_auth.trusted_authserv_id
    if trusted:
        yield CheckResult("command mail", True, f"on for {len(cfg.agents)} agent(s): carried "
                          f"out when the topmost Authentication-Results from {trusted} says "
                          "dkim or dmarc pass for the agent's domain")
    elif cfg.agents:
        yield CheckResult("command mail", True, "off: every command is refused (recorded as "
                          "command_refused) until you set [sender_auth] trusted_authserv_id to "
                          "the authserv-id your receiving mail server writes in "
                          "Authentication-Results; see docs/agents.md")
    else:
        yield CheckResult("command mail", True, "off: no [agents] configured")


CHECKS: tuple[Callable[[App], Iterator[CheckResult]], ...] = (
    check_content, check_database, check_history, check_command_mail, check_oauth2, check_imap,
    check_smtp)


def run_checks(app: App, extra: tuple[Callable[[App], Iterator[CheckResult]], ...] = ()
               ) -> list[CheckResult]:
    results = [CheckResult("config", True, f"{app.config.path} is valid")]
    for check in (*CHECKS, *extra):
        results.extend(check(app))
    return results
