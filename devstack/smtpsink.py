"""An SMTP sink for tests, the demo and benchmarks, built on aiosmtpd.

``SmtpSink`` accepts mail on a free port of 127.0.0.1, records every message
(envelope and raw bytes) in a thread-safe list and can optionally hand each
message to a ``DovecotServer`` via LMTP, so a full customer -> support ->
auto-reply -> customer INBOX round trip can be observed.  It can require
AUTH, offer STARTTLS, offer SMTPUTF8 or not (on by default, as Postfix has it)
and inject failures: 4xx/5xx replies at MAIL FROM (``refuse_mail``), at RCPT
for one address (``refuse_rcpt``) or at DATA (``fail_next``), and dropped
connections after DATA (``drop_next``).  Each message records the MAIL
parameters it came with (``SMTPUTF8``); ``connections`` counts the connections
clients opened (to see whether they reuse one).

It must not relay mail anywhere but the given Dovecot, listen on any address
other than 127.0.0.1, or be used by ``maild`` at runtime.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import email
import email.policy
import logging
import shutil
import ssl
import tempfile
import threading
import time
import warnings
from collections import deque
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from devstack.dovecot import free_ports, make_self_signed_cert

if TYPE_CHECKING:
    from devstack.dovecot import DovecotServer

log = logging.getLogger(__name__)

_DROP = "drop"
_PASS = "pass"
_AUTH_LINE_LIMIT = 12288
# aiosmtpd logs these on every connection of a sink with auth_require_tls=False.
_AIOSMTPD_NOISE = (
    "auth_required == True but auth_require_tls == False",
    "Session.login_data is deprecated",
)


class _DropAiosmtpdNoise(logging.Filter):
    """Drop aiosmtpd's per-connection warnings about settings a test sink wants."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_AIOSMTPD_NOISE)


logging.getLogger("mail.log").addFilter(_DropAiosmtpdNoise())


@dataclass(frozen=True)
class ReceivedMessage:
    """One message accepted by the sink."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    received_at: float
    auth_user: str | None = None
    delivered_to: tuple[str, ...] = field(default=())
    mail_options: tuple[str, ...] = field(default=())  # as aiosmtpd gives them: upper case

    def parsed(self) -> EmailMessage:
        """The message parsed with the modern ``email`` policy."""
        return cast(EmailMessage, email.message_from_bytes(self.raw, policy=email.policy.default))


class _SMTP(SMTP):
    """aiosmtpd's server with a stream buffer large enough for an RFC 4954 AUTH line (the
    reader's limit is fixed at construction; the 1001-octet DATA line check stays)."""

    line_length_limit = _AUTH_LINE_LIMIT + 2

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        starttls = self.transport is not None and self._original_transport is not None
        super().connection_made(transport)
        handler = self.event_handler
        if isinstance(handler, _Handler) and not starttls:  # STARTTLS: the same connection
            handler._sink._connected()


class _Controller(Controller):
    """Controller that silences aiosmtpd's warning about AUTH without TLS (wanted in tests)."""

    def factory(self) -> SMTP:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
            server = _SMTP(self.handler, **self.SMTP_kwargs)
        server.line_length_limit = SMTP.line_length_limit  # DATA lines: RFC 5321's limit
        # RFC 4954 allows AUTH lines of 12288 octets (an XOAUTH2 JWT does not fit in 512);
        # an instance dict, as aiosmtpd's default is shared by every server in the process.
        server.command_size_limits = collections.defaultdict(
            lambda: SMTP.command_size_limit, {"AUTH": _AUTH_LINE_LIMIT})
        return server


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return await self._sink._on_data(server, session, envelope)

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,  # noqa: N802
                          address: str, mail_options: list[str]) -> str:
        refusal = self._sink._pop_refusal("mail", address)
        if refusal is not None:
            return refusal
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,  # noqa: N802
                          address: str, rcpt_options: list[str]) -> str:
        refusal = self._sink._pop_refusal("rcpt", address)
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:  # noqa: N802
        """SASL XOAUTH2 (offered only with ``oauth2_public_key``): the same token rules
        as Dovecot's oauth2 passdb. A refusal is "not handled", so aiosmtpd answers 535."""
        if len(args) > 1:
            blob = args[1].encode()
        else:
            answer = await server.challenge_auth("", encode_to_b64=False)
            if not isinstance(answer, bytes):
                return AuthResult(success=False, handled=True)  # aiosmtpd already answered
            blob = base64.b64encode(answer)
        user = self._sink._check_xoauth2(blob)
        if user is None:
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=user)


class SmtpSink:
    """A recording SMTP server on 127.0.0.1 (port chosen at first ``start()``, then kept)."""

    host = "127.0.0.1"

    def __init__(
        self,
        *,
        require_auth: bool = False,
        username: str = "smtpuser",
        password: str = "secret",
        starttls: bool = False,
        cert_file: str | Path | None = None,
        key_file: str | Path | None = None,
        deliver_to: DovecotServer | None = None,
        port: int = 0,
        smtputf8: bool = True,
        oauth2_public_key: str | None = None,
    ) -> None:
        self.oauth2_public_key = oauth2_public_key
        self.xoauth2_logins: list[str] = []  # users that logged in with XOAUTH2, in order
        self.require_auth = require_auth
        self.smtputf8 = smtputf8
        self.username = username
        self.password = password
        self.starttls = starttls
        self.deliver_to = deliver_to
        self.port = port
        self.cert_file, self.key_file = _pick_cert(cert_file, key_file, deliver_to)
        self._own_cert_dir: Path | None = None
        self._messages: list[ReceivedMessage] = []
        self._faults: deque[str] = deque()
        # (stage, address or None for any) -> replies still to give, in order
        self._refusals: dict[tuple[str, str | None], deque[str]] = {}
        self.connections = 0  # connections clients opened so far
        self._cond = threading.Condition()
        self._controller: _Controller | None = None

    # ----------------------------------------------------------------- lifecycle

    @property
    def ca_file(self) -> Path | None:
        """The certificate clients should trust for STARTTLS (None without STARTTLS)."""
        return self.cert_file if self.starttls else None

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> None:
        """Start listening (again) on ``self.port``; a no-op when already running."""
        if self._controller is not None:
            return
        if not self.port:
            self.port = free_ports(1)[0]
        controller = _Controller(
            _Handler(self), hostname=self.host, port=self.port, **self._smtp_kwargs()
        )
        controller.start()
        with self._cond:  # not the connection aiosmtpd's controller opens to test itself
            self.connections = 0
        self._controller = controller

    def stop(self) -> None:
        """Stop listening and drop open connections; recorded messages are kept."""
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def close(self) -> None:
        """Stop and remove any certificate the sink generated for itself."""
        self.stop()
        if self._own_cert_dir is not None:
            shutil.rmtree(self._own_cert_dir, ignore_errors=True)
            self._own_cert_dir = None

    def __enter__(self) -> SmtpSink:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ----------------------------------------------------------------- recording

    @property
    def messages(self) -> list[ReceivedMessage]:
        """A snapshot of the messages received so far, oldest first."""
        with self._cond:
            return list(self._messages)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[ReceivedMessage]:
        """Block until at least ``count`` messages were received; TimeoutError otherwise."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._messages) >= count, timeout):
                raise TimeoutError(
                    f"SMTP sink got {len(self._messages)} message(s), expected {count} "
                    f"within {timeout:g} s"
                )
            return list(self._messages)

    def clear(self) -> None:
        """Forget recorded messages and pending failure injections."""
        with self._cond:
            self._messages.clear()
            self._faults.clear()
            self._refusals.clear()

    # ----------------------------------------------------------------- failure injection

    def fail_next(self, code: int, message: str, count: int = 1) -> None:
        """Answer the next ``count`` DATA commands with ``"<code> <message>"``; record nothing."""
        if not 400 <= code <= 599:
            raise ValueError(f"failure code must be 4xx or 5xx, got {code}")
        with self._cond:
            self._faults.extend([f"{code} {message}"] * count)

    def refuse_mail(self, code: int, message: str, count: int = 1) -> None:
        """Answer the next ``count`` MAIL FROM commands with ``"<code> <message>"``."""
        self._add_refusal("mail", None, code, message, count)

    def refuse_rcpt(self, address: str, code: int, message: str, count: int = 1) -> None:
        """Answer the next ``count`` RCPT TO commands for ``address`` (compared without
        case) with ``"<code> <message>"``; other recipients are accepted."""
        self._add_refusal("rcpt", address.lower(), code, message, count)

    def _add_refusal(self, stage: str, address: str | None, code: int, message: str,
                     count: int) -> None:
        if not 400 <= code <= 599:
            raise ValueError(f"failure code must be 4xx or 5xx, got {code}")
        with self._cond:
            self._refusals.setdefault((stage, address), deque()).extend(
                [f"{code} {message}"] * count)

    def drop_next(self, count: int = 1, *, after: int = 0) -> None:
        """Close the connection after the next ``count`` DATA payloads, before replying
        (after first accepting ``after`` messages as usual)."""
        with self._cond:
            self._faults.extend([_PASS] * after + [_DROP] * count)

    # ----------------------------------------------------------------- internals

    def _smtp_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"server_hostname": "localhost", "ready_timeout": 5.0,
                                  "enable_SMTPUTF8": self.smtputf8}
        if self.require_auth:
            kwargs.update(
                authenticator=self._authenticate, auth_required=True, auth_require_tls=False
            )
        if self.starttls:
            kwargs["tls_context"] = self._server_tls_context()
        if self.oauth2_public_key is None:
            kwargs["auth_exclude_mechanism"] = ["XOAUTH2"]
        return kwargs

    def _check_xoauth2(self, blob: bytes) -> str | None:
        """The user of a valid XOAUTH2 initial response (base64), else None."""
        from devstack.oauth2 import validate_token

        try:
            text = base64.b64decode(blob, validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        fields = dict(part.split("=", 1) for part in text.split("\x01") if "=" in part)
        user, auth = fields.get("user", ""), fields.get("auth", "")
        if not (user and auth.startswith("Bearer ") and self.oauth2_public_key):
            return None
        if not validate_token(auth.removeprefix("Bearer "), self.oauth2_public_key, user):
            return None
        with self._cond:
            self.xoauth2_logins.append(user)
        return user

    def _server_tls_context(self) -> ssl.SSLContext:
        if self.cert_file is None or self.key_file is None:
            self._own_cert_dir = Path(tempfile.mkdtemp(prefix="smtpsink-"))
            self.cert_file, self.key_file = make_self_signed_cert(self._own_cert_dir)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def _authenticate(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8", "replace")
        ok = login == self.username and auth_data.password.decode() == self.password
        if not ok:
            return AuthResult(success=False, handled=False)  # aiosmtpd then answers 535
        return AuthResult(success=True, auth_data=login)

    def _connected(self) -> None:
        with self._cond:
            self.connections += 1

    def _pop_refusal(self, stage: str, address: str) -> str | None:
        key = (stage, address.lower() if stage == "rcpt" else None)
        with self._cond:
            pending = self._refusals.get(key)
            return pending.popleft() if pending else None

    def _pop_fault(self) -> str | None:
        with self._cond:
            return self._faults.popleft() if self._faults else None

    async def _on_data(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        fault = self._pop_fault()
        if fault == _DROP:
            if server.transport is not None:
                server.transport.close()
            return "421 4.4.2 connection dropped"  # never reaches the client
        if fault is not None and fault != _PASS:
            return fault
        raw = bytes(envelope.original_content or b"")
        mail_from = envelope.mail_from or ""
        rcpts = tuple(envelope.rcpt_tos)
        delivered = await asyncio.get_running_loop().run_in_executor(
            None, self._deliver, mail_from, rcpts, raw
        )
        self._record(
            ReceivedMessage(
                mail_from=mail_from,
                rcpt_tos=rcpts,
                raw=raw,
                received_at=time.time(),
                auth_user=cast("str | None", session.auth_data) if session.authenticated else None,
                delivered_to=delivered,
                mail_options=tuple(envelope.mail_options),
            )
        )
        return "250 2.0.0 OK"

    def _record(self, message: ReceivedMessage) -> None:
        with self._cond:
            self._messages.append(message)
            self._cond.notify_all()

    def _deliver(self, mail_from: str, rcpts: tuple[str, ...], raw: bytes) -> tuple[str, ...]:
        """Hand the message to Dovecot for every recipient it knows; log the rest."""
        dovecot = self.deliver_to
        if dovecot is None:
            return ()
        delivered = []
        for rcpt in rcpts:
            if not dovecot.has_user(rcpt):
                log.info("smtp sink: %s is not a Dovecot user, not delivering", rcpt)
                continue
            try:
                dovecot.deliver(rcpt, raw, mail_from=mail_from)
            except Exception as exc:  # a sink keeps accepting, like a queueing MTA
                log.warning("smtp sink: LMTP delivery to %s failed: %s", rcpt, exc)
                continue
            delivered.append(rcpt)
        return tuple(delivered)


def _pick_cert(
    cert_file: str | Path | None,
    key_file: str | Path | None,
    deliver_to: DovecotServer | None,
) -> tuple[Path | None, Path | None]:
    if cert_file is not None and key_file is not None:
        return Path(cert_file), Path(key_file)
    if deliver_to is not None:
        return deliver_to.cert_file, deliver_to.key_file
    return None, None


__all__ = ["ReceivedMessage", "SmtpSink"]
