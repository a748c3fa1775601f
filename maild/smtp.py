"""Deliver one message over SMTP with aiosmtplib; translate failures to SendError.

TLS always verifies the server (a custom CA may be added, never verification
turned off). A 4xx reply or a dropped connection is temporary; a 5xx reply is
permanent (`SendError.permanent`), and so is an address that is not a plain
addr-spec (`addresses.usable_address`): it is refused before connecting.
Mail that needs SMTPUTF8 (RFC 6531: a non-ASCII envelope address or UTF-8 headers)
is sent with the SMTPUTF8 MAIL parameter when the server's EHLO offers it; when it
does not, nothing is sent and the failure is permanent with reason
`smtputf8-unsupported` (the address is never punycoded behind the customer's back).
No queueing or retries here: see the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import aiosmtplib

from maild.addresses import usable_address
from maild.auth.base import TokenSource
from maild.errors import AuthError, SendError
from maild.mailbox import tls_context

SMTPUTF8_UNSUPPORTED = "smtputf8-unsupported"


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


async def _send(s: SmtpSettings, raw: bytes, sender: str, recipients: Sequence[str]) -> str:
    smtp = _client(s)
    try:
        await smtp.connect()
        await _login(smtp, s)
        options = await _mail_options(smtp, s, needs_smtputf8(raw, sender, recipients),
                                      recipients)
        errors, reply = await smtp.sendmail(sender, list(recipients), raw, mail_options=options)
    finally:
        if smtp.is_connected:
            try:
                await smtp.quit()
            except aiosmtplib.SMTPException:
                smtp.close()
    if errors:
        raise SendError(f"{_where(s)}: refused recipients: {sorted(errors)}", permanent=True)
    return reply


def send(s: SmtpSettings, raw: bytes, sender: str, recipients: Sequence[str]) -> str:
    """Send `raw` (bytes, already a full message); returns the server's final reply."""
    bad = [a for a in (sender, *recipients) if not usable_address(a)]
    if bad or not recipients:
        raise SendError(f"{_where(s)}: unusable address {bad[0] if bad else '(none)'!r}, "
                        "not sent", permanent=True)
    try:
        return asyncio.run(_send(s, raw, sender, recipients))
    except AuthError as exc:
        raise SendError(f"{_where(s)}: {exc}") from None
    except aiosmtplib.SMTPResponseException as exc:
        raise SendError(f"{_where(s)}: {exc.code} {exc.message}",
                        permanent=500 <= exc.code < 600) from None
    except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
        raise SendError(f"{_where(s)}: {type(exc).__name__}: {exc}") from None
    except ValueError as exc:  # aiosmtplib refuses an address it cannot put in MAIL/RCPT
        raise SendError(f"{_where(s)}: unusable address: {exc}", permanent=True) from None


def login_check(s: SmtpSettings) -> str:
    """Connect, (STARTTLS,) log in and quit; returns a short description."""
    async def probe() -> str:
        smtp = _client(s)
        await smtp.connect()
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
        raise SendError(f"{_where(s)}: {type(exc).__name__}: {exc}") from None
