"""An address an SMTP client cannot even put into RCPT TO (spaces, from a mangled
From header) is a permanent send failure with a clear error, against the real
aiosmtplib client and sink: it must not crash the outbox run."""

from __future__ import annotations

import pytest

from devstack.smtpsink import SmtpSink
from maild.errors import SendError
from maild.smtp import SmtpSettings, send

pytestmark = pytest.mark.integration
RAW = b"From: s@example.com\r\nTo: x@example.org\r\nSubject: hi\r\n\r\nhello\r\n"


@pytest.mark.parametrize("rcpt", ["Customer dana@bigcorp.com", "a@b.com\r\nRCPT TO:<x@y>"])
def test_unusable_recipient_is_a_permanent_failure(smtp_sink: SmtpSink, rcpt: str) -> None:
    settings = SmtpSettings("127.0.0.1", smtp_sink.port, "none", timeout=10)
    with pytest.raises(SendError, match="unusable address") as err:
        send(settings, RAW, "support@example.com", [rcpt])
    assert err.value.permanent
    assert smtp_sink.messages == []
    send(settings, RAW, "support@example.com", ["x@example.org"])  # the next one goes out
    assert len(smtp_sink.messages) == 1
