"""pytest fixtures for the local mail stack (a private Dovecot and an SMTP sink).

Load with ``pytest_plugins = ["devstack.pytest_plugin"]`` in the root
conftest or in a test module.  Fixtures:

* ``dovecot`` (session): a started ``DovecotServer``; stopped at session end.
* ``imap_account`` (function): a fresh user on that server -> ``ImapAccount``.
* ``smtp_sink`` (function): a started ``SmtpSink`` delivering to ``dovecot``.

Set ``DEVSTACK_KEEP=1`` to keep the Dovecot work dir (config, log, Maildirs)
after the session.  These fixtures must not share mailboxes between tests,
leave server processes behind, or talk to anything but the servers they start.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from devstack.dovecot import DovecotServer, ImapAccount, make_workdir, reachable_by_mail_user
from devstack.smtpsink import SmtpSink

KEEP_ENV = "DEVSTACK_KEEP"


@pytest.fixture(scope="session")
def dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DovecotServer]:
    """A private Dovecot shared by the whole session (each test uses its own user)."""
    workdir = tmp_path_factory.mktemp("dovecot")
    own_dir = not reachable_by_mail_user(workdir)
    if own_dir:  # as root, pytest's 0700 tmp dirs are closed to the dovecot user
        workdir = make_workdir("devstack-pytest-")
    server = DovecotServer(workdir)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        if own_dir and not os.environ.get(KEEP_ENV):
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def imap_account(dovecot: DovecotServer) -> ImapAccount:
    """A fresh, empty mailbox on the session Dovecot."""
    return dovecot.create_account()


@pytest.fixture
def smtp_sink(dovecot: DovecotServer) -> Iterator[SmtpSink]:
    """A running SMTP sink that also delivers to known Dovecot users via LMTP."""
    with SmtpSink(deliver_to=dovecot) as sink:
        yield sink
