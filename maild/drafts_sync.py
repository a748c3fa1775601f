"""Drafts, the IMAP half: place pending drafts in Drafts, remove stale ones.

`sync_drafts(app)` runs after each cycle, outside any transaction: for the work
`maild.drafts.pending_drafts` lists, it APPENDs each pending draft to the
Drafts folder (SPECIAL-USE \\Drafts unless `drafts_folder` is configured)
flagged \\Draft, threaded to the customer's message and marked
`X-Maild-Draft: <ticket id>`, records `draft_created` {uid, message_id}, and
deletes the drafts of tickets that got an agent reply (or were solved /
filtered), recording `draft_removed`. It never deletes a message without its
own marker header and never sends a draft. It is apart from the ingest handler
(`maild.drafts`, built by `App._handlers`) so that the App is imported only here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from maild.app import App
from maild.drafts import DRAFT_HEADER, DraftReport, DraftWork, pending_drafts
from maild.errors import MailboxError, MaildError
from maild.mailbox import MailboxClient
from maild.replying import Agent, compose_reply, prepare_reply
from maild.store import repo

log = logging.getLogger("maild.drafts")

ClientFactory = Callable[[int], MailboxClient]


def sync_drafts(app: App, client_factory: ClientFactory | None = None) -> DraftReport:
    """Create pending drafts and remove stale ones; call it after each cycle.

    IMAP failures are logged and retried on the next call (nothing is lost).
    """
    report = DraftReport()
    with app.sessions() as session:
        work = pending_drafts(session)
    for w in (w for w in work if w.action == "skip"):
        _record(app, w.ticket_id, "draft_skipped", reason="agent already replied or solved")
        report.skipped.append(w.ticket_id)
    index = {mb.address.lower(): i for i, mb in enumerate(app.config.mailboxes)}
    factory = client_factory or (lambda i: MailboxClient(app.imap_settings(i)))
    for address in sorted({w.mailbox for w in work if w.action != "skip"}):
        if address not in index:
            report.errors.append(f"{address}: mailbox no longer configured")
            continue
        todo = [w for w in work if w.mailbox == address and w.action != "skip"]
        try:
            _sync_mailbox(app, factory(index[address]), index[address], todo, report)
        except MailboxError as exc:
            log.warning("drafts for %s not synced, will retry: %s", address, exc)
            report.errors.append(str(exc))
    return report


def _sync_mailbox(app: App, client: MailboxClient, index: int, todo: list[DraftWork],
                  report: DraftReport) -> None:
    with client:
        folder = app.config.mailboxes[index].drafts_folder or \
            client.find_special_folder("\\Drafts")
        if folder is None:
            raise MailboxError(f"{app.config.mailboxes[index].address}: no Drafts folder")
        client.select(folder)
        for w in todo:
            if w.action == "create":
                _create(app, client, folder, w, report)
            else:
                _remove(app, client, w, report)


def _create(app: App, client: MailboxClient, folder: str, w: DraftWork,
            report: DraftReport) -> None:
    found = client.search_header(DRAFT_HEADER, str(w.ticket_id))
    if found:  # appended before, but the record was lost: adopt it
        _record(app, w.ticket_id, "draft_created", uid=found[0], message_id=None)
        report.created.append(w.ticket_id)
        return
    now = app.clock.now()
    auto = app.automation()
    agent = Agent(app.environ.get("MAILD_AGENT_NAME") or auto.settings.sender_name)
    try:
        with app.sessions() as session:
            reply = prepare_reply(session, auto, w.ticket_id, w.macro, agent=agent, now=now)
    except MaildError as exc:
        _record(app, w.ticket_id, "draft_skipped", reason=str(exc)[:500])
        report.skipped.append(w.ticket_id)
        return
    out = compose_reply(reply, now, {DRAFT_HEADER: str(w.ticket_id)})
    uid = client.append(folder, out.raw, ["\\Draft"], now)
    _record(app, w.ticket_id, "draft_created", uid=uid, message_id=out.message_id,
            macro=reply.macro.name)
    report.created.append(w.ticket_id)
    log.info("ticket #%d: draft from macro %s placed in %s", w.ticket_id, w.macro, folder)


def _remove(app: App, client: MailboxClient, w: DraftWork, report: DraftReport) -> None:
    uids = client.search_header(DRAFT_HEADER, str(w.ticket_id))
    client.delete_uids(uids)
    _record(app, w.ticket_id, "draft_removed", uids=uids)
    report.removed.append(w.ticket_id)
    log.info("ticket #%d: stale draft removed (%d message(s))", w.ticket_id, len(uids))


def _record(app: App, ticket_id: int, kind: str, **detail: Any) -> None:
    with app.sessions.begin() as session:
        repo.add_event(session, ticket_id, app.clock.now(), kind, "maild", **detail)
