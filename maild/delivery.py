"""Deliver the outbox once: the one entry point for the daemon, its scheduler and the CLI.

The main loop (`maild.daemon`), the scheduler's outbox job (`maild.schedule`) and
`maild digest --send` all call `deliver_outbox`; it lives below all three so that
imports run one way. Sending itself is `maild.outbox.OutboxSender`'s business.
"""

from __future__ import annotations

import logging
import threading

from maild.app import App
from maild.outbox import DeliveryReport

log = logging.getLogger("maild.daemon")


# The main loop and the scheduler's outbox job both deliver; one at a time per
# process, or both would APPEND the same sent messages to Sent (claims keep SMTP
# sends apart already; Sent copies are not claimed).
_DELIVERING = threading.Lock()


def deliver_outbox(app: App) -> DeliveryReport | None:
    sender = app.outbox_sender()
    if sender is None:
        return None
    with _DELIVERING:
        report = sender.deliver_due()
    if report.sent or report.retry or report.failed or report.held:
        log.info("outbox: %d sent, %d to retry, %d failed, %d held", len(report.sent),
                 len(report.retry), len(report.failed), len(report.held))
    return report
