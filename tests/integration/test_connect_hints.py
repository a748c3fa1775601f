"""A `security` that does not match the port fails fast with a hint (issue 16.5), against
the real Dovecot: STARTTLS on its implicit-TLS port used to wait 62 s for a greeting that
never comes; TLS on its plain port fails at once with WRONG_VERSION_NUMBER (IMAP, and
SMTP against the sink)."""

from __future__ import annotations

import time

import pytest

from devstack.dovecot import ImapAccount
from devstack.smtpsink import SmtpSink
from maild.errors import MailboxError, SendError
from maild.mailbox import CONNECT_TIMEOUT, ImapSettings, MailboxClient
from maild.smtp import SmtpSettings, login_check

pytestmark = pytest.mark.integration


def settings(account: ImapAccount, port: int, security: str) -> ImapSettings:
    return ImapSettings("localhost", port, security, account.address, account.password,
                        str(account.ca_file), timeout=60.0)


def test_starttls_on_the_implicit_tls_port_fails_within_the_connect_timeout(
        imap_account: ImapAccount) -> None:
    started = time.monotonic()
    with pytest.raises(MailboxError) as failed:
        MailboxClient(settings(imap_account, imap_account.imaps_port, "starttls")).connect()
    took = time.monotonic() - started
    assert CONNECT_TIMEOUT - 1 <= took < CONNECT_TIMEOUT + 5, took
    message = str(failed.value)
    assert message.startswith(f"IMAP localhost:{imap_account.imaps_port}: cannot connect: ")
    assert 'no IMAP greeting within 10 s with security = "starttls"' in message


def test_tls_on_the_plain_port_names_the_mismatch(imap_account: ImapAccount) -> None:
    started = time.monotonic()
    with pytest.raises(MailboxError) as failed:
        MailboxClient(settings(imap_account, imap_account.port, "tls")).connect()
    assert time.monotonic() - started < 5
    message = str(failed.value)
    assert "WRONG_VERSION_NUMBER" in message or "wrong version number" in message
    assert f"the server did not answer TLS on port {imap_account.port}" in message


def test_the_right_security_still_logs_in(imap_account: ImapAccount) -> None:
    for port, security in ((imap_account.port, "starttls"), (imap_account.imaps_port, "tls")):
        with MailboxClient(settings(imap_account, port, security)) as client:
            assert client.select("INBOX").exists == 0


def test_smtp_tls_on_a_plain_port_names_the_mismatch(smtp_sink: SmtpSink) -> None:
    settings = SmtpSettings(smtp_sink.host, smtp_sink.port, "tls", None, None,
                            str(smtp_sink.ca_file) if smtp_sink.ca_file else None, timeout=30.0)
    started = time.monotonic()
    with pytest.raises(SendError) as failed:
        login_check(settings)
    assert time.monotonic() - started < 10
    message = str(failed.value)
    assert f"the server did not answer TLS on port {smtp_sink.port}" in message, message
    assert 'For port 587 use security = "starttls"' in message


def test_smtp_starttls_on_an_implicit_tls_port_fails_within_the_connect_timeout(
        imap_account: ImapAccount) -> None:
    """Dovecot's IMAPS port waits for a TLS ClientHello, as an SMTPS port (465) does: a
    client expecting a plain greeting gives up after the connect timeout, not its 30 s."""
    settings = SmtpSettings("localhost", imap_account.imaps_port, "starttls", None, None,
                            str(imap_account.ca_file), timeout=30.0)
    started = time.monotonic()
    with pytest.raises(SendError) as failed:
        login_check(settings)
    took = time.monotonic() - started
    assert CONNECT_TIMEOUT - 1 <= took < CONNECT_TIMEOUT + 5, took
    message = str(failed.value)
    assert f"SMTP localhost:{imap_account.imaps_port}" in message
    assert "greeting within 10 s" in message and "starttls" in message, message
