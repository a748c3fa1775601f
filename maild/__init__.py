"""maild: email-support automation beside a shared IMAP mailbox."""

__version__ = "0.1.0"
