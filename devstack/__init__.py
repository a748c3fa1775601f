"""Local mail stack for integration tests, the demo and benchmarks.

Starts throw-away servers on 127.0.0.1 only: a private Dovecot (IMAP, IMAPS,
LMTP) and an SMTP sink (aiosmtpd) that records what it receives and can hand
it to Dovecot. Nothing here is used by the ``maild`` package at runtime; it
must never touch the system Dovecot, system ports or any real mailbox.
"""

from devstack.dovecot import DovecotServer
from devstack.smtpsink import ReceivedMessage, SmtpSink

__all__ = ["DovecotServer", "ReceivedMessage", "SmtpSink"]
