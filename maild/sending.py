"""What one send attempt reports, shared by the SMTP client (which produces it) and
the outbox (which records it): the recipients the server refused, and the shape of
the callables the outbox is given to send with.

Plain values only: no SMTP, no database, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

_ENHANCED = re.compile(r"\s*([245]\.\d{1,3}\.\d{1,3})\b")


@dataclass(frozen=True)
class Refusal:
    """One recipient the server refused at RCPT TO (or every recipient, when the
    server refused the message at MAIL FROM or DATA): its reply code and text."""

    address: str
    code: int
    message: str

    @property
    def permanent(self) -> bool:
        return 500 <= self.code < 600

    @property
    def status(self) -> str:
        """The enhanced status code the reply starts with (RFC 3463, e.g. 5.1.1),
        else the reply code: what a `delivery_failed` event records as `status`."""
        found = _ENHANCED.match(self.message)
        return found.group(1) if found else str(self.code)

    def describe(self) -> str:
        return f"{self.address}: {self.code} {self.message}"


@dataclass(frozen=True)
class SendResult:
    """The server accepted the message for every recipient except those `refused`."""

    reply: str
    refused: tuple[Refusal, ...] = ()


#: Send one message (raw bytes, envelope sender, recipients); raises SendError.
#: A plain `str` return (the server's reply) means: every recipient accepted.
SendFn = Callable[[bytes, str, Sequence[str]], "SendResult | str"]
#: Open a connection for a batch of messages: a context manager giving a SendFn
#: that reuses it (and closes it at the end).
ConnectFn = Callable[[], AbstractContextManager[SendFn]]
