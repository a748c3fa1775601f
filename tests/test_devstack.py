"""Integration tests for the local mail stack in ``devstack`` (Dovecot + SMTP sink).

They prove the servers used by maild's integration tests, the demo and the
benchmarks behave as advertised.  They must not test ``maild`` itself, and
must not leave server processes running.
"""

from __future__ import annotations

import asyncio
import shutil
import smtplib
import socket
import ssl
import time
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest
from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from devstack import dovecot as dovecot_module
from devstack.dovecot import (
    DovecotServer,
    ImapAccount,
    find_dovecot_binary,
    free_ports,
    make_workdir,
    process_group_alive,
)
from devstack.smtpsink import SmtpSink

pytest_plugins = ["devstack.pytest_plugin"]

integration = pytest.mark.integration


def make_message(to: str, subject: str = "Hello", sender: str = "customer@example.org") -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{time.monotonic_ns()}@example.org>"
    msg.set_content("Where is my order?\n")
    return msg.as_bytes()


def login(account: ImapAccount) -> IMAPClient:
    client = IMAPClient(account.host, account.port, ssl=False, timeout=10)
    client.login(account.address, account.password)
    return client


def inbox_subjects(account: ImapAccount) -> list[bytes]:
    with login(account) as client:
        client.select_folder("INBOX", readonly=True)
        fetched = client.fetch(client.search("ALL"), ["ENVELOPE"])
        return [data[b"ENVELOPE"].subject for _, data in sorted(fetched.items())]


def smtp_send(sink: SmtpSink, to: str, raw: bytes, **login_kw: str) -> None:
    with smtplib.SMTP(sink.host, sink.port, local_hostname="localhost", timeout=10) as smtp:
        if login_kw:
            smtp.login(login_kw["user"], login_kw["password"])
        smtp.sendmail("customer@example.org", [to], raw)


# --------------------------------------------------------------------------- Dovecot


@integration
def test_plain_login_and_capabilities(imap_account: ImapAccount) -> None:
    with login(imap_account) as client:
        caps = set(client.capabilities())
    assert {b"IDLE", b"MOVE", b"UIDPLUS", b"CONDSTORE", b"QRESYNC", b"SPECIAL-USE"} <= caps


@integration
@pytest.mark.parametrize("hostname", ["127.0.0.1", "localhost"])
def test_starttls_verifies_with_ca_file(imap_account: ImapAccount, hostname: str) -> None:
    with IMAPClient(hostname, imap_account.port, ssl=False, timeout=10) as client:
        assert b"STARTTLS" in client.capabilities()
        client.starttls(imap_account.ssl_context())
        client.login(imap_account.address, imap_account.password)
        assert client.noop()


@integration
def test_starttls_rejects_unknown_ca(imap_account: ImapAccount) -> None:
    client = IMAPClient(imap_account.host, imap_account.port, ssl=False, timeout=10)
    with client, pytest.raises(ssl.SSLCertVerificationError):
        client.starttls(ssl.create_default_context())


@integration
def test_implicit_tls_on_imaps_port(imap_account: ImapAccount) -> None:
    context = imap_account.ssl_context()
    with IMAPClient(
        imap_account.host, imap_account.imaps_port, ssl=True, ssl_context=context, timeout=10
    ) as client:
        client.login(imap_account.address, imap_account.password)
        assert b"IDLE" in client.capabilities()


@integration
def test_special_use_folders(imap_account: ImapAccount) -> None:
    with login(imap_account) as client:
        folders = {name: set(flags) for flags, _, name in client.list_folders()}
        assert client.find_special_folder(b"\\Sent") == "Sent"
    assert {"INBOX", "Sent", "Drafts", "Junk", "Trash"} <= set(folders)
    assert b"\\Sent" in folders["Sent"]
    assert b"\\Drafts" in folders["Drafts"]


@integration
def test_append_then_fetch(imap_account: ImapAccount) -> None:
    raw = make_message(imap_account.address, subject="Appended")
    with login(imap_account) as client:
        client.append("Sent", raw, flags=[b"\\Seen"])
        client.select_folder("Sent")
        (uid,) = client.search("ALL")
        data = client.fetch([uid], ["RFC822", "FLAGS"])[uid]
    assert data[b"RFC822"].replace(b"\r\n", b"\n") == raw.replace(b"\r\n", b"\n")
    assert b"\\Seen" in data[b"FLAGS"]


@integration
def test_add_user_while_running(dovecot: DovecotServer) -> None:
    address = f"late-{time.monotonic_ns()}@example.com"
    client = IMAPClient(dovecot.host, dovecot.imap_port, ssl=False, timeout=10)
    with client, pytest.raises(LoginError, match="(?i)authentication failed"):
        client.login(address, "pw")
    dovecot.add_user(address, "pw")
    assert dovecot.has_user(address.upper())
    with IMAPClient(dovecot.host, dovecot.imap_port, ssl=False, timeout=10) as client:
        client.login(address, "pw")


@integration
def test_wrong_password_is_rejected(imap_account: ImapAccount) -> None:
    client = IMAPClient(imap_account.host, imap_account.port, ssl=False, timeout=10)
    with client, pytest.raises(LoginError, match="(?i)authentication failed"):
        client.login(imap_account.address, "not-the-password")


@integration
def test_deliver_via_lmtp_lands_in_inbox(dovecot: DovecotServer) -> None:
    account = dovecot.create_account()
    dovecot.deliver(account.address, make_message(account.address, subject="Via LMTP"))
    assert inbox_subjects(account) == [b"Via LMTP"]


@integration
def test_lmtp_unix_socket_accepts_mail(dovecot: DovecotServer) -> None:
    account = dovecot.create_account()
    with smtplib.LMTP(str(dovecot.lmtp_socket), local_hostname="localhost") as lmtp:
        lmtp.sendmail("x@example.org", [account.address], make_message(account.address, "Sock"))
    assert inbox_subjects(account) == [b"Sock"]


@integration
def test_idle_reports_new_mail_promptly(imap_account: ImapAccount, dovecot: DovecotServer) -> None:
    with login(imap_account) as client:
        client.select_folder("INBOX")
        client.idle()
        started = time.monotonic()
        dovecot.deliver(imap_account.address, make_message(imap_account.address))
        seen: list[tuple[object, ...]] = []
        while time.monotonic() - started < 5 and (1, b"EXISTS") not in seen:
            seen += client.idle_check(timeout=1)  # "* OK Still here" arrives every second
        client.idle_done()
    assert (1, b"EXISTS") in seen
    assert time.monotonic() - started < 2


@integration
def test_restart_keeps_mail_and_ports(dovecot: DovecotServer) -> None:
    account = dovecot.create_account()
    dovecot.deliver(account.address, make_message(account.address, subject="Before"))
    ports = (dovecot.imap_port, dovecot.imaps_port, dovecot.lmtp_port)
    try:
        dovecot.stop()
        with pytest.raises(OSError):
            socket.create_connection((dovecot.host, dovecot.imap_port), timeout=2).close()
    finally:
        dovecot.start()  # the server is shared by the session: always bring it back
    assert (dovecot.imap_port, dovecot.imaps_port, dovecot.lmtp_port) == ports
    dovecot.restart()
    dovecot.deliver(account.address, make_message(account.address, subject="After"))
    assert inbox_subjects(account) == [b"Before", b"After"]


@integration
def test_start_failure_reports_log_tail() -> None:
    workdir = make_workdir("devstack-fail-")
    server = DovecotServer(workdir)
    try:
        with socket.socket() as blocker:
            blocker.bind(("127.0.0.1", 0))
            blocker.listen()
            server.imap_port = blocker.getsockname()[1]
            server.imaps_port, server.lmtp_port = free_ports(2)
            with pytest.raises(RuntimeError, match="Address already in use"):
                server.start()
        assert not server.running
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def test_missing_binary_points_to_install_script(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dovecot_module.shutil, "which", lambda *args, **kwargs: None)
    with pytest.raises(RuntimeError, match="scripts/install.sh"):
        find_dovecot_binary()


@pytest.mark.parametrize(
    ("address", "password"),
    [("a:b@example.com", "pw"), ("a@example.com", "p:w"), ("../x@example.com", "pw"), ("x", "pw")],
)
def test_add_user_rejects_unsafe_values(tmp_path: Path, address: str, password: str) -> None:
    with pytest.raises(ValueError):
        DovecotServer(tmp_path).add_user(address, password)


@integration
def test_stop_leaves_no_processes() -> None:
    workdir = make_workdir("devstack-stop-")
    try:
        with DovecotServer(workdir) as server:
            pgid = server.pid
            assert pgid is not None
        assert server.pid is None
        assert not process_group_alive(pgid)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# --------------------------------------------------------------------------- SMTP sink


@integration
def test_sink_records_message() -> None:
    raw = make_message("support@example.com", subject="Recorded")
    with SmtpSink() as sink:
        smtp_send(sink, "support@example.com", raw)
        (got,) = sink.wait_for(1, timeout=5)
    assert got.mail_from == "customer@example.org"
    assert got.rcpt_tos == ("support@example.com",)
    assert got.parsed()["Subject"] == "Recorded"
    assert got.delivered_to == ()


@integration
def test_sink_with_aiosmtplib() -> None:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "a@example.org", "b@example.com", "Async"
    msg.set_content("hi")
    with SmtpSink() as sink:
        asyncio.run(aiosmtplib.send(msg, hostname=sink.host, port=sink.port, start_tls=False))
        assert sink.wait_for(1)[0].parsed()["Subject"] == "Async"


@integration
def test_sink_requires_auth() -> None:
    with SmtpSink(require_auth=True, username="u", password="p") as sink:
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            smtp_send(sink, "b@example.com", make_message("b@example.com"))
        assert refused.value.smtp_code == 530
        with pytest.raises(smtplib.SMTPAuthenticationError):
            smtp_send(sink, "b@example.com", make_message("b@example.com"), user="u", password="x")
        smtp_send(sink, "b@example.com", make_message("b@example.com"), user="u", password="p")
        (got,) = sink.wait_for(1)
    assert got.auth_user == "u"


@integration
def test_sink_starttls_with_own_cert() -> None:
    with SmtpSink(starttls=True) as sink:
        assert sink.ca_file is not None
        context = ssl.create_default_context(cafile=str(sink.ca_file))
        with smtplib.SMTP("localhost", sink.port, local_hostname="localhost", timeout=10) as smtp:
            smtp.starttls(context=context)
            smtp.sendmail("a@example.org", ["b@example.com"], make_message("b@example.com"))
        assert len(sink.wait_for(1)) == 1


@integration
@pytest.mark.parametrize(("code", "text"), [(451, "4.3.0 try later"), (554, "5.0.0 rejected")])
def test_sink_fail_next(code: int, text: str) -> None:
    with SmtpSink() as sink:
        sink.fail_next(code, text, count=2)
        for _ in range(2):
            with pytest.raises(smtplib.SMTPDataError) as failed:
                smtp_send(sink, "b@example.com", make_message("b@example.com"))
            assert (failed.value.smtp_code, failed.value.smtp_error) == (code, text.encode())
        assert sink.messages == []
        smtp_send(sink, "b@example.com", make_message("b@example.com"))
        assert len(sink.wait_for(1)) == 1


@integration
def test_sink_drop_next() -> None:
    with SmtpSink() as sink:
        sink.drop_next()
        with pytest.raises(smtplib.SMTPServerDisconnected):
            smtp_send(sink, "b@example.com", make_message("b@example.com"))
        assert sink.messages == []
        smtp_send(sink, "b@example.com", make_message("b@example.com"))
        assert len(sink.wait_for(1)) == 1


@integration
def test_sink_stop_and_start_on_same_port() -> None:
    with SmtpSink() as sink:
        port = sink.port
        sink.stop()
        with pytest.raises(ConnectionRefusedError):
            smtp_send(sink, "b@example.com", make_message("b@example.com"))
        sink.start()
        assert sink.port == port
        smtp_send(sink, "b@example.com", make_message("b@example.com"))
        assert len(sink.wait_for(1)) == 1


@integration
def test_sink_clear_and_wait_timeout() -> None:
    with SmtpSink() as sink:
        smtp_send(sink, "b@example.com", make_message("b@example.com"))
        sink.wait_for(1)
        sink.clear()
        assert sink.messages == []
        with pytest.raises(TimeoutError):
            sink.wait_for(1, timeout=0.2)


@integration
def test_round_trip_sink_to_inbox(smtp_sink: SmtpSink, dovecot: DovecotServer) -> None:
    customer = dovecot.create_account(prefix="customer")
    raw = make_message(customer.address, subject="Your ticket #42", sender="support@example.com")
    with smtplib.SMTP(smtp_sink.host, smtp_sink.port, local_hostname="localhost") as smtp:
        smtp.sendmail("support@example.com", [customer.address, "nobody@example.net"], raw)
    (got,) = smtp_sink.wait_for(1)
    assert got.delivered_to == (customer.address,)
    assert inbox_subjects(customer) == [b"Your ticket #42"]


@integration
def test_sink_starttls_reuses_dovecot_cert(dovecot: DovecotServer) -> None:
    with SmtpSink(starttls=True, deliver_to=dovecot) as sink:
        assert sink.ca_file == dovecot.ca_file
        context = ssl.create_default_context(cafile=str(dovecot.ca_file))
        with smtplib.SMTP(sink.host, sink.port, local_hostname="localhost", timeout=10) as smtp:
            smtp.starttls(context=context)
            assert smtp.noop()[0] == 250
