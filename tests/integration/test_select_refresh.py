"""The open folder is not opened again (against the real Dovecot): Dovecot takes
seconds to SELECT an INBOX of a million messages, and a history import used to SELECT it
twice every few seconds (the import was Dovecot-bound). `MailboxClient.select` of the
folder already open is a NOOP + STATUS; the live pass skips a folder whose STATUS says
nothing is new, without selecting it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devstack.dovecot import ImapAccount
from maild.app import build_app
from maild.config import load_config
from maild.ingest import Ingestor
from maild.mailbox import ImapSettings, MailboxClient
from maild.poller import Poller
from tests.integration.stack import append, env_for, run_maild, write_config

pytestmark = pytest.mark.integration


def mail(i: int) -> bytes:
    return (f"From: Ann <ann{i}@example.org>\r\nTo: support@example.com\r\n"
            f"Subject: Question {i}\r\nMessage-ID: <refresh-{i}@example.org>\r\n"
            f"Date: Tue, 01 Dec 2026 10:00:00 +0000\r\n\r\nHello {i}\r\n").encode()


def counted(client: MailboxClient, name: str) -> list[Any]:
    """Record each call of the imapclient method `name` on this connection."""
    calls: list[Any] = []
    real = getattr(client.client, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return real(*args, **kwargs)

    setattr(client.client, name, wrapper)
    return calls


def test_the_open_folder_sees_new_mail_without_a_select(imap_account: ImapAccount) -> None:
    append(imap_account, "INBOX", [(mail(1), None), (mail(2), None)])
    settings = ImapSettings("localhost", imap_account.port, "starttls", imap_account.address,
                            imap_account.password, str(imap_account.ca_file), timeout=30.0)
    with MailboxClient(settings) as client:
        first = client.select("INBOX")
        selects = counted(client, "select_folder")
        append(imap_account, "INBOX", [(mail(3), None)])
        again = client.select("INBOX")
        assert selects == []  # NOOP + STATUS instead
        assert (again.uidvalidity, again.exists) == (first.uidvalidity, 3)
        assert again.uidnext == first.uidnext + 1
        new = client.uids_above(first.uidnext - 1)
        assert len(new) == 1
        assert b"refresh-3" in next(client.fetch(new))[0].raw
        sent = client.status("Sent")  # read without opening it: INBOX stays open
        assert client.selected == "INBOX" and sent.exists == 0 and sent.uidvalidity > 0
        client.select("Sent")
        assert selects == [("Sent",)]  # another folder is opened for real


def test_the_live_pass_does_not_open_a_folder_with_nothing_new(
        imap_account: ImapAccount, db_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path, imap_account, db_url)
    run_maild(config, imap_account, "db", "upgrade")
    app = build_app(load_config(config), environ=env_for(imap_account))
    mb = app.config.mailboxes[0]
    ingestor = Ingestor(app.sessions, app.clock, mb.address, own_addresses=app.own_addresses(),
                        routing=app.routing())
    append(imap_account, "INBOX", [(mail(1), None)])
    with MailboxClient(app.imap_settings(0)) as client:
        poller = Poller(lambda: client, ingestor, inbox=mb.inbox_folder, sent=mb.sent_folder)
        first = poller.cycle(client)  # the first pass opens both folders
        assert first.folders["inbox"].stored == 1
        selects = counted(client, "select_folder")
        quiet = poller.cycle(client)  # nothing new anywhere: STATUS only
        assert selects == [] and quiet.folders["inbox"].stored == 0
        append(imap_account, "INBOX", [(mail(2), None)])
        busy = poller.cycle(client)
        assert busy.folders["inbox"].stored == 1
        assert selects == [(mb.inbox_folder,)]  # only the folder with new mail is opened
    app.engine.dispose()
