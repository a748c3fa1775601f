"""Deliver one message over SMTP with aiosmtplib; translate failures to SendError.

TLS always verifies the server (a custom CA may be added, never verification
turned off). A 4xx reply or a dropped connection is temporary; a 5xx reply is
permanent (`SendError.permanent`), and so is an address that is not a plain
addr-spec (`addresses.usable_address`): it is refused before connecting. A refused
login (or greeting, EHLO, STARTTLS) is temporary: it is not the message's fault.
Refusals: 5xx at MAIL FROM or DATA, or 5xx for every recipient at RCPT, is a
permanent failure with reason `refused` and the reply per address
(`SendError.refused`); a message some recipients took is sent, and the others'
refusals come back in `SendResult.refused` (4xx or 5xx alike: a retry would send
it twice to those who have it). `SmtpConnection` reuses one connection for a batch.
Mail that needs SMTPUTF8 (RFC 6531: a non-ASCII envelope address or UTF-8 headers)
is sent with the SMTPUTF8 MAIL parameter when the server's EHLO offers it; when it
does not, nothing is sent and the failure is permanent with reason
`smtputf8-unsupported` (the address is never punycoded behind the customer's back).
No queueing or retries here: see the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import aiosmtplib

from maild.addresses import usable_address
from maild.auth.base import TokenSource
from maild.errors import AuthError, SendError
from maild.mailbox import CONNECT_TIMEOUT, security_hint, tls_context
from maild.sending import Refusal, SendFn, SendResult

SMTPUTF8_UNSUPPORTED = "smtputf8-unsupported"
REFUSED = "refused"  # every recipient refused with 5xx, at MAIL FROM, RCPT or DATA
UNUSABLE_ADDRESS = "unusable-address"


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    security: str  # tls | starttls | none
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    timeout: float = 30.0
    token_source: TokenSource | None = None  # set: AUTH XOAUTH2 instead of a password


def _client(s: SmtpSettings) -> aiosmtplib.SMTP:
    return aiosmtplib.SMTP(hostname=s.host, port=s.port, use_tls=s.security == "tls",
                           start_tls=s.security == "starttls", timeout=s.timeout,
                           tls_context=tls_context(s.ca_file) if s.security != "none" else None)


def _connect_timeout(s: SmtpSettings) -> float:
    """TCP, TLS, the greeting and STARTTLS within this: a wrong port fails fast."""
    return min(CONNECT_TIMEOUT, s.timeout)


def _where(s: SmtpSettings) -> str:
    return f"SMTP {s.host}:{s.port}"


def needs_smtputf8(raw: bytes, sender: str, recipients: Sequence[str]) -> bool:
    """A non-ASCII envelope address, or 8-bit bytes in the header (RFC 6532)."""
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    return not (all(a.isascii() for a in (sender, *recipients)) and head.isascii())


async def _mail_options(smtp: aiosmtplib.SMTP, s: SmtpSettings, utf8: bool,
                        recipients: Sequence[str]) -> list[str]:
    if not utf8:
        return []
    if smtp.is_ehlo_or_helo_needed:
        with contextlib.suppress(aiosmtplib.SMTPHeloError):  # no ESMTP: no SMTPUTF8 either
            await smtp.ehlo()
    if not smtp.supports_extension("smtputf8"):
        raise SendError(f"{SMTPUTF8_UNSUPPORTED}: {_where(s)} does not offer SMTPUTF8, which "
                        f"mail to {', '.join(recipients)} needs; not sent",
                        permanent=True, reason=SMTPUTF8_UNSUPPORTED)
    return ["SMTPUTF8"]


async def _login(smtp: aiosmtplib.SMTP, s: SmtpSettings) -> None:
    """AUTH with the password, or XOAUTH2 with a token renewed once if it is refused."""
    if not s.username:
        return
    tokens = s.token_source
    if tokens is None:
        await smtp.login(s.username, s.password or "")
        return
    try:
        await smtp.auth_xoauth2(s.username, await asyncio.to_thread(tokens.token))
    except aiosmtplib.SMTPAuthenticationError:
        tokens.invalidate()
        try:
            await smtp.auth_xoauth2(s.username, await asyncio.to_thread(tokens.token))
        except aiosmtplib.SMTPAuthenticationError as exc:  # temporary: a token can come back
            raise SendError(f"{_where(s)}: login with an OAuth2 token (renewed once) failed "
                            f"for {s.username}: {exc.code} {exc.message}") from None


def _refusals(recipients: Sequence[str], code: int, message: str) -> tuple[Refusal, ...]:
    return tuple(Refusal(a, code, message) for a in recipients)


def _refused_error(s: SmtpSettings, stage: str, refused: tuple[Refusal, ...]) -> SendError:
    """Every recipient refused (at MAIL FROM, RCPT or DATA): permanent when every reply
    is 5xx, else temporary (the 4xx ones may take it later; nobody has it yet)."""
    permanent = all(r.permanent for r in refused)
    detail = "; ".join(r.describe() for r in refused)
    return SendError(f"{_where(s)}: refused at {stage}: {detail}", permanent=permanent,
                     reason=REFUSED if permanent else None, refused=refused)


class SmtpConnection:
    """One SMTP connection for a batch of messages: opened (and logged in) at the first
    send, reused for the next ones (aiosmtplib sends RSET after a refused message, so
    the next envelope starts clean), opened again when the server closed it. A failure
    of the connection itself closes it and says so (`SendError.connection_lost`).
    Synchronous: it owns an event loop for its lifetime; `close()` sends QUIT."""

    def __init__(self, s: SmtpSettings) -> None:
        self.s = s
        self._runner = asyncio.Runner()
        self._smtp: aiosmtplib.SMTP | None = None
        self.opened = 0  # connections opened so far

    def __enter__(self) -> SmtpConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, raw: bytes, sender: str, recipients: Sequence[str]) -> SendResult:
        """Send `raw` (bytes, already a full message); raises SendError."""
        s = self.s
        bad = [a for a in (sender, *recipients) if not usable_address(a)]
        if bad or not recipients:
            raise SendError(f"{_where(s)}: unusable address {bad[0] if bad else '(none)'!r}, "
                            "not sent", permanent=True, reason=UNUSABLE_ADDRESS)
        try:
            return self._runner.run(self._send(raw, sender, list(recipients)))
        except SendError:
            raise
        except ValueError as exc:  # aiosmtplib refuses an address it cannot put in MAIL/RCPT
            raise SendError(f"{_where(s)}: unusable address: {exc}", permanent=True,
                            reason=UNUSABLE_ADDRESS) from None
        except (aiosmtplib.SMTPSenderRefused, aiosmtplib.SMTPDataError) as exc:
            if exc.code == 421:  # the server is closing the connection
                self._drop()
                raise SendError(f"{_where(s)}: {exc.code} {exc.message}",
                                connection_lost=True) from None
            stage = "MAIL FROM" if isinstance(exc, aiosmtplib.SMTPSenderRefused) else "DATA"
            raise _refused_error(s, stage, _refusals(recipients, exc.code, exc.message)) \
                from None
        except BaseException as exc:
            self._drop()
            failure = _failure(s, exc)
            if failure is exc:
                raise
            raise failure from None

    async def _send(self, raw: bytes, sender: str, recipients: list[str]) -> SendResult:
        smtp = await self._connected()
        options = await _mail_options(smtp, self.s, needs_smtputf8(raw, sender, recipients),
                                      recipients)
        try:
            errors, reply = await smtp.sendmail(sender, recipients, raw, mail_options=options)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise _refused_error(self.s, "RCPT", tuple(
                Refusal(r.recipient, r.code, r.message) for r in exc.recipients)) from None
        return SendResult(reply, tuple(Refusal(a, r.code, r.message) for a, r in errors.items()))

    async def _connected(self) -> aiosmtplib.SMTP:
        if self._smtp is not None and self._smtp.is_connected:
            return self._smtp
        self._smtp = None
        smtp = _client(self.s)
        await smtp.connect(timeout=_connect_timeout(self.s))
        try:
            await _login(smtp, self.s)
        except BaseException:
            smtp.close()
            raise
        self._smtp, self.opened = smtp, self.opened + 1
        return smtp

    def _drop(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            smtp.close()

    def close(self) -> None:
        """QUIT (a failing QUIT just closes) and end the event loop."""
        smtp, self._smtp = self._smtp, None
        try:
            if smtp is not None and smtp.is_connected:
                self._runner.run(_quit(smtp))
        finally:
            self._runner.close()


async def _quit(smtp: aiosmtplib.SMTP) -> None:
    try:
        await smtp.quit()
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        smtp.close()


def _failure(s: SmtpSettings, exc: BaseException) -> BaseException:
    """A failure that is not a refusal of the message, as SendError (anything else,
    e.g. KeyboardInterrupt, is returned unchanged to be raised again)."""
    if isinstance(exc, AuthError):
        return SendError(f"{_where(s)}: {exc}", connection_lost=True)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        # the greeting, EHLO, STARTTLS or AUTH refused: not the message's fault (a wrong
        # password must not fail every queued reply for good); retried with backoff
        return SendError(f"{_where(s)}: {exc.code} {exc.message}", connection_lost=True)
    if isinstance(exc, (TimeoutError, aiosmtplib.SMTPException, OSError)):
        hint = security_hint(s.security, s.port, exc, service="SMTP",
                             wait=_connect_timeout(s))
        return SendError(f"{_where(s)}: {type(exc).__name__}: {exc}{hint}",
                         connection_lost=True)
    return exc


@contextlib.contextmanager
def connection(s: SmtpSettings) -> Iterator[SendFn]:
    """One connection reused for every message sent in the `with` block."""
    with SmtpConnection(s) as conn:
        yield conn.send


def send(s: SmtpSettings, raw: bytes, sender: str, recipients: Sequence[str]) -> SendResult:
    """Send one message on a connection of its own; returns what the server said."""
    with SmtpConnection(s) as conn:
        return conn.send(raw, sender, recipients)


def login_check(s: SmtpSettings) -> str:
    """Connect, (STARTTLS,) log in and quit; returns a short description."""
    async def probe() -> str:
        smtp = _client(s)
        await smtp.connect(timeout=_connect_timeout(s))
        try:
            await _login(smtp, s)
            return f"{_where(s)}: connected ({s.security})" + (
                f", logged in as {s.username}" if s.username else "")
        finally:
            await smtp.quit()
    try:
        return asyncio.run(probe())
    except AuthError as exc:
        raise SendError(f"{_where(s)}: {exc}") from None
    except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
        hint = security_hint(s.security, s.port, exc, service="SMTP", wait=_connect_timeout(s))
        raise SendError(f"{_where(s)}: {type(exc).__name__}: {exc}{hint}") from None
