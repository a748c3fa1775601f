"""Send through the mailbox a message comes from: choose the SMTP by the sender.

With several [[mailbox]] tables each mailbox may submit through its own
[mailbox.smtp]. The outbox gives a send function the raw message, its envelope
sender and its recipients; the sender is the address of the ticket's mailbox, so
it names the SMTP to use. `routed_send` does that per message; `routed_connections`
does it for a batch sent over reused connections: one connection per mailbox,
opened when that mailbox's first message comes and closed when the batch ends.
It does no SMTP itself (it is handed the functions that do) and no IMAP.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from typing import Any

from maild.errors import SendError

#: (raw, envelope sender, recipients) -> the server's reply
Send = Callable[[bytes, str, Sequence[str]], Any]


def _no_smtp(sender: str) -> SendError:
    return SendError(f"{sender}: no [mailbox.smtp] and no [smtp] to send it with")


def routed_send(send_for: Callable[[int], Send | None], index_of: Callable[[str], int]
                ) -> Send:
    """A send function that sends each message with its mailbox's `send_for(index)`."""
    def send(raw: bytes, sender: str, recipients: Sequence[str]) -> Any:
        chosen = send_for(index_of(sender))
        if chosen is None:
            raise _no_smtp(sender)
        return chosen(raw, sender, recipients)
    return send


@contextmanager
def routed_connections(connect_for: Callable[[int], AbstractContextManager[Send] | None],
                       index_of: Callable[[str], int]) -> Iterator[Send]:
    """For a batch: a send function that reuses one connection per mailbox
    (`connect_for(index)`, None when the mailbox cannot send), all closed at the end."""
    with ExitStack() as stack:
        open_: dict[int, Send] = {}

        def send(raw: bytes, sender: str, recipients: Sequence[str]) -> Any:
            index = index_of(sender)
            if index not in open_:
                connect = connect_for(index)
                if connect is None:
                    raise _no_smtp(sender)
                open_[index] = stack.enter_context(connect)
            return open_[index](raw, sender, recipients)
        yield send
