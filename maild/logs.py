"""Logging setup: one human-readable line per decision, or JSON lines.

Never logs message bodies or secrets at INFO; callers pass ids and reasons.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {"at": datetime.fromtimestamp(record.created, UTC).isoformat(),
                "level": record.levelname.lower(), "logger": record.name,
                "msg": record.getMessage()}
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


class StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (tests swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


QUIET_LIBRARIES = ("msal", "requests_oauthlib", "oauthlib", "google", "google_auth_oauthlib",
                   "urllib3", "imapclient", "aiosmtplib")


def setup_logging(level: str = "INFO", json_lines: bool = False, *,
                  trace_imap: bool = False) -> None:
    """Log to stderr at `level`. imapclient's protocol trace (every command and
    response, message bodies and SASL lines included) only with `trace_imap`, never by
    DEBUG alone."""
    handler = StderrHandler()
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                                               "%Y-%m-%d %H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd (tests, demo)
    # At DEBUG these log request bodies, token responses or SASL lines (client secrets,
    # authorization codes, tokens): never, whatever --log-level says.
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)
    if trace_imap:  # asked for by name, for debugging a server
        logging.getLogger("imapclient").setLevel(logging.NOTSET)
