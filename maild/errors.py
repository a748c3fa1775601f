"""maild's own exception tree.

Every error a person can meet carries a message they can act on (which file,
which key, which server). Library exceptions are translated at the edges
(config loading, IMAP, SMTP, templates); nothing here does I/O.
"""

from __future__ import annotations

from maild.sending import Refusal


class MaildError(Exception):
    """Base class: a failure with a message meant for a person."""


class ConfigError(MaildError):
    """The configuration file is missing, malformed or has a bad value."""


class MailboxError(MaildError):
    """IMAP connection, login or protocol failure."""


class LoginRefused(MailboxError):
    """The IMAP server refused the login (wrong password or user, or a refused token)."""


class AuthError(MaildError):
    """An OAuth2 token could not be had: the identity provider refused the grant (the
    message names its error code and what to check) or could not be reached. Never
    carries the secret or a token."""


class SendError(MaildError):
    """SMTP connection, login or delivery failure. `reason`, on a permanent failure,
    names why the message cannot reach its recipients (e.g. `smtputf8-unsupported`,
    `refused`): the outbox records it on the ticket as a `delivery_failed` event per
    recipient, with the server's reply per address when `refused` has them.
    `connection_lost`: the connection is gone (refused, dropped, timed out), so the
    rest of a batch waits for the next run instead of trying it now."""

    def __init__(self, message: str, *, permanent: bool = False,
                 reason: str | None = None, refused: tuple[Refusal, ...] = (),
                 connection_lost: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.reason = reason
        self.refused = refused
        self.connection_lost = connection_lost


class RuleError(MaildError):
    """A rule file is malformed: names the file, the rule and the field."""


class TemplateError(MaildError):
    """A macro or mail template is malformed or failed to render."""


class NotFoundError(MaildError):
    """A ticket, macro or other named object does not exist."""
