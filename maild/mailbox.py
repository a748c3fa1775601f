"""IMAP access for one shared mailbox, over imapclient.

This is the only module that sees imapclient and its bytes-keyed responses:
it hands out plain typed values (`FolderStatus`, `FetchedMessage`) and raises
`MailboxError` with a message naming the server. It never marks customer mail
\\Seen (fetches use BODY.PEEK[]) and never moves or deletes mail, except for
drafts maild itself placed. It knows nothing about tickets or the database.
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from typing import Any

import imapclient
from imapclient.exceptions import IMAPClientError

from maild.auth.base import TokenSource
from maild.errors import AuthError, LoginRefused, MailboxError

CONNECT_TIMEOUT = 10.0  # seconds for TCP, TLS and the greeting: a wrong port fails fast
IDLE_MAX_SECONDS = 25 * 60  # re-issue IDLE well before the RFC 2177 29-minute limit
FETCH_ITEMS = [b"BODY.PEEK[]", b"INTERNALDATE"]
SEARCH_WINDOW = 50_000  # UIDs per UID SEARCH: a reply line stays well under imaplib's 1 MB
APPENDUID_RE = re.compile(r"APPENDUID (\d+) (\d+)", re.IGNORECASE)
NETWORK_ERRORS = (IMAPClientError, OSError, socket.timeout, ssl.SSLError, EOFError)


@dataclass(frozen=True)
class ImapSettings:
    host: str
    port: int
    security: str  # tls | starttls | none
    username: str
    password: str
    ca_file: str | None = None
    timeout: float = 60.0
    token_source: TokenSource | None = None  # set: log in with SASL XOAUTH2, not LOGIN


@dataclass(frozen=True)
class FolderStatus:
    name: str
    uidvalidity: int
    uidnext: int
    exists: int
    highest_modseq: int | None


@dataclass(frozen=True)
class FetchedMessage:
    uid: int
    raw: bytes
    internaldate: datetime | None


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """Verifying context; a custom CA adds to, never replaces, verification."""
    ctx = ssl.create_default_context()
    if ca_file:
        ctx.load_verify_locations(cafile=ca_file)
    return ctx


ClientFactory = Callable[..., Any]


class MailboxClient:
    """One logged-in IMAP connection. Use as a context manager."""

    def __init__(self, settings: ImapSettings,
                 factory: ClientFactory = imapclient.IMAPClient) -> None:
        self.settings = settings
        self._factory = factory
        self._client: Any = None
        self.selected: str | None = None
        self._uidnext = 0  # of the selected folder, as SELECT said (0: not given)
        self.renew_by: float | None = None  # OAuth2: log in afresh after this (monotonic)

    def _where(self) -> str:
        return f"IMAP {self.settings.host}:{self.settings.port}"

    def connect(self) -> MailboxClient:
        s = self.settings
        try:
            ctx = tls_context(s.ca_file)
            timeout = imapclient.SocketTimeout(connect=min(CONNECT_TIMEOUT, s.timeout),
                                               read=s.timeout)
            client = self._factory(s.host, port=s.port, ssl=s.security == "tls",
                                   ssl_context=ctx, timeout=timeout)
            if s.security == "starttls":
                client.starttls(ctx)
            client.normalise_times = False
            if s.token_source is not None:
                _oauth2_login(client, s.username, s.token_source)
                self.renew_by = s.token_source.renew_at()
            else:
                client.login(s.username, s.password)
        except imapclient.exceptions.LoginError as exc:
            how = " with an OAuth2 token (renewed once)" if s.token_source else ""
            raise LoginRefused(f"{self._where()}: login{how} failed for {s.username}: "
                               f"{_text(exc)}") from None
        except AuthError as exc:
            raise MailboxError(f"{self._where()}: {exc}") from None
        except NETWORK_ERRORS as exc:
            raise MailboxError(f"{self._where()}: cannot connect: {_text(exc)}"
                               f"{security_hint(s.security, s.port, exc)}") from None
        self._client = client
        self.selected, self._uidnext = None, 0  # a new session has no folder open
        return self

    def seconds_until_renewal(self) -> float | None:
        """OAuth2 sessions: seconds until the login's token is due for renewal (<= 0: log
        in again now); None for password logins, which never need it."""
        return None if self.renew_by is None else self.renew_by - time.monotonic()

    def __enter__(self) -> MailboxClient:
        return self if self._client is not None else self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.logout()
            except Exception:  # closing a broken connection must not raise
                with contextlib.suppress(Exception):
                    client.shutdown()

    @property
    def client(self) -> Any:
        if self._client is None:
            raise MailboxError(f"{self._where()}: not connected")
        return self._client

    def capabilities(self) -> set[str]:
        return {c.decode().upper() for c in self._call(self.client.capabilities)}

    def has_idle(self) -> bool:
        return "IDLE" in self.capabilities()

    def find_special_folder(self, flag: str) -> str | None:
        """Name of the folder with SPECIAL-USE `flag` (e.g. '\\Sent'), or None."""
        want = flag.encode().lower()
        for flags, _delim, name in self._call(self.client.list_folders):
            if any(f.lower() == want for f in flags):
                return str(name)
        return None

    def select(self, folder: str) -> FolderStatus:
        """Open `folder` read-write. If it is the folder already open on this connection,
        a NOOP (the server reports new mail to the session, so SEARCH and FETCH see it)
        and a STATUS stand in for opening it again: Dovecot takes seconds to SELECT an
        INBOX of a million messages, and a history import selects it every few seconds."""
        if self.selected == folder:
            self._call(self.client.noop)
            status = self.status(folder)
            self._uidnext = status.uidnext
            return status
        info = self._call(self.client.select_folder, folder, readonly=False)
        self.selected = folder
        status = _folder_status(folder, info, b"EXISTS")
        self._uidnext = status.uidnext
        return status

    def status(self, folder: str) -> FolderStatus:
        """UIDVALIDITY, UIDNEXT, MESSAGES (HIGHESTMODSEQ with CONDSTORE) of `folder` by
        STATUS, which reads the server's index without opening the folder."""
        items = [b"UIDVALIDITY", b"UIDNEXT", b"MESSAGES"]
        if "CONDSTORE" in self.capabilities():
            items.append(b"HIGHESTMODSEQ")
        return _folder_status(folder, self._call(self.client.folder_status, folder, items),
                              b"MESSAGES")

    def uids_above(self, last_uid: int) -> list[int]:
        """UIDs greater than last_uid in the selected folder, ascending."""
        return self._search_uids(last_uid + 1, None, [])

    def _search_uids(self, lo: int, hi: int | None, criteria: list[Any]) -> list[int]:
        """UID SEARCH over lo..hi (None: to the end, `*`), SEARCH_WINDOW UIDs at a time:
        imaplib refuses a response line over 1 MB, which one SEARCH of a big folder's
        ~140,000 UIDs is. The last window of an open range ends at `*`, so mail that came
        after SELECT is found as with one SEARCH."""
        top = hi if hi is not None else max(self._uidnext - 1, lo)
        found: list[int] = []
        start = lo
        while True:
            end = start + SEARCH_WINDOW - 1
            last = end >= top
            upper = "*" if last and hi is None else str(min(end, top))
            found += self._call(self.client.search, ["UID", f"{start}:{upper}", *criteria])
            if last:
                break
            start = end + 1
        return sorted({u for u in found if u >= lo and (hi is None or u <= hi)})

    def fetch(self, uids: Sequence[int], batch: int = 200) -> Iterator[list[FetchedMessage]]:
        """Yield the messages in batches, without setting \\Seen."""
        for i in range(0, len(uids), batch):
            chunk = list(uids[i:i + batch])
            data = self._call(self.client.fetch, chunk, FETCH_ITEMS)
            out = []
            for uid in chunk:
                item = data.get(uid)
                if item is None:  # expunged between SEARCH and FETCH
                    continue
                raw = item.get(b"BODY[]") or b""
                out.append(FetchedMessage(uid, raw, _aware(item.get(b"INTERNALDATE"))))
            yield out

    def fetch_range(self, lo: int, hi: int) -> list[FetchedMessage]:
        """The messages with UIDs lo..hi (those that exist), ascending, without \\Seen."""
        # a UID set naming each UID: UID FETCH skips those that do not exist
        data = self._call(self.client.fetch, list(range(lo, hi + 1)), FETCH_ITEMS)
        return [FetchedMessage(uid, item.get(b"BODY[]") or b"", _aware(item.get(b"INTERNALDATE")))
                for uid, item in sorted(data.items()) if lo <= uid <= hi]

    def uids_between(self, lo: int, hi: int, since: datetime | None = None) -> list[int]:
        """UIDs lo..hi of the selected folder (with `since`: that arrived on or after its
        date, by INTERNALDATE; IMAP compares whole days), ascending."""
        return self._search_uids(lo, hi, ["SINCE", since.date()] if since is not None else [])

    def internaldates(self, uids: Sequence[int]) -> dict[int, datetime | None]:
        """INTERNALDATE of each of `uids` (the arrival time, no body fetched)."""
        if not uids:
            return {}
        data = self._call(self.client.fetch, list(uids), [b"INTERNALDATE"])
        return {uid: _aware(item.get(b"INTERNALDATE")) for uid, item in data.items()}

    def search_message_ids(self, ids: Sequence[str], below: int) -> list[int]:
        """UIDs under `below` whose Message-ID header contains one of `ids` (SEARCH
        HEADER is a substring match: the caller de-duplicates by Message-ID)."""
        if not ids or below <= 1:
            return []
        criteria: list[Any] = ["UID", f"1:{below - 1}"]
        for i, msgid in enumerate(ids):
            if i < len(ids) - 1:
                criteria.append("OR")
            criteria += ["HEADER", "Message-ID", msgid]
        return sorted(u for u in self._call(self.client.search, criteria) if u < below)

    def add_flags(self, uids: Sequence[int], flags: Sequence[str]) -> None:
        self._call(self.client.add_flags, list(uids), [f.encode() for f in flags])

    def search_header(self, name: str, value: str) -> list[int]:
        """UIDs in the selected folder whose header `name` is exactly `value`.

        IMAP SEARCH HEADER matches substrings ("1" finds "12"), so the hits are
        checked against the fetched header before they are returned.
        """
        found = self._call(self.client.search, ["HEADER", name, value])
        if not found:
            return []
        item = f"BODY.PEEK[HEADER.FIELDS ({name.upper()})]"
        data = self._call(self.client.fetch, sorted(found), [item.encode()])
        return sorted(uid for uid, fields in data.items()
                      if value.strip() in _header_values(fields, name))

    def delete_uids(self, uids: Sequence[int]) -> None:
        """Flag `uids` \\Deleted and expunge them (only those with UIDPLUS)."""
        if not uids:
            return
        self._call(self.client.add_flags, list(uids), [b"\\Deleted"])
        if "UIDPLUS" in self.capabilities():
            self._call(self.client.uid_expunge, list(uids))
        else:
            self._call(self.client.expunge)

    def append(self, folder: str, raw: bytes, flags: Sequence[str] = (),
               when: datetime | None = None) -> int | None:
        """APPEND a message; returns its UID when the server has UIDPLUS."""
        resp = self._call(self.client.append, folder, raw, [f.encode() for f in flags], when)
        return _appenduid(resp)

    def idle_wait(self, seconds: float) -> bool:
        """IDLE on the selected folder up to `seconds`; True if the server said something.

        A server that says BYE (shutting down) or closes the socket raises
        MailboxError("... connection lost ..."), never a silent empty result.
        """
        seconds = min(seconds, IDLE_MAX_SECONDS)
        self._call(self.client.idle)
        try:
            responses = self._call(self.client.idle_check, timeout=seconds)
        except BaseException:
            with contextlib.suppress(Exception):  # the connection is gone anyway
                self.client.idle_done()
            raise
        bye = next((r for r in responses if isinstance(r, tuple) and r and r[0] == b"BYE"), None)
        if bye is not None:
            said = b" ".join(x for x in bye[1:] if isinstance(x, bytes)).decode(errors="replace")
            raise MailboxError(f"{self._where()}: connection lost during IDLE: the server said "
                               f"BYE {said}".rstrip())
        self._call(self.client.idle_done)
        return any(_is_change(r) for r in responses)

    def noop(self) -> None:
        self._call(self.client.noop)

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except NETWORK_ERRORS as exc:
            if _is_disconnect(exc):
                raise MailboxError(f"{self._where()}: connection lost during {fn.__name__}: "
                                   f"the server closed it ({_text(exc)})") from None
            raise MailboxError(f"{self._where()}: {fn.__name__} failed: {_text(exc)}") from None


def _folder_status(folder: str, info: Any, count_key: bytes) -> FolderStatus:
    """A FolderStatus from SELECT's answer (count under EXISTS) or STATUS's (MESSAGES)."""
    modseq = info.get(b"HIGHESTMODSEQ")
    return FolderStatus(folder, int(info[b"UIDVALIDITY"]), int(info.get(b"UIDNEXT", 0)),
                        int(info.get(count_key, 0)), int(modseq) if modseq else None)


CHANGE_RESPONSES = frozenset({b"EXISTS", b"RECENT", b"EXPUNGE", b"FETCH"})


def _is_change(response: Any) -> bool:
    """True for untagged responses that mean the mailbox changed (not keepalives)."""
    return isinstance(response, tuple) and len(response) > 1 and \
        response[1] in CHANGE_RESPONSES


def _aware(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def _header_values(fields: Any, name: str) -> set[str]:
    """The values of header `name` in a FETCH BODY[HEADER.FIELDS] response item."""
    raw = next((v for k, v in fields.items()
                if isinstance(k, bytes) and k.upper().startswith(b"BODY[HEADER")), b"")
    parsed = BytesHeaderParser().parsebytes(raw if isinstance(raw, bytes) else b"")
    return {str(v).strip() for v in parsed.get_all(name, [])}


def _appenduid(resp: Any) -> int | None:
    text = resp.decode(errors="replace") if isinstance(resp, bytes) else str(resp)
    m = APPENDUID_RE.search(text)
    return int(m.group(2)) if m else None


def _is_disconnect(exc: BaseException) -> bool:
    """True when the server went away (closed, reset, EOF), not for protocol errors."""
    if isinstance(exc, (ConnectionError, EOFError, ssl.SSLEOFError, ssl.SSLZeroReturnError)):
        return True
    text = _text(exc).lower()
    return "eof" in text or "socket error" in text or "connection closed" in text


def security_hint(security: str, port: int, exc: BaseException, *, service: str = "IMAP",
                  wait: float = CONNECT_TIMEOUT) -> str:
    """A hint when a failed connect looks like `security` not matching the port (IMAP:
    993 implicit TLS, 143 STARTTLS; SMTP: 465 implicit TLS, 587 STARTTLS)."""
    text = f"{type(exc).__name__} {_text(exc)}".lower()
    implicit_port, starttls_port = (465, 587) if service == "SMTP" else (993, 143)
    if security == "tls" and ("wrong_version_number" in text or "wrong version number" in text
                              or "unknown protocol" in text):
        return (f" (the server did not answer TLS on port {port}: is it a plain or STARTTLS "
                f"port? For port {starttls_port} use security = \"starttls\")")
    if security != "tls" and ("timed out" in text or "timeout" in text
                              or isinstance(exc, socket.timeout)):
        implicit = (f" Port {implicit_port} is implicit TLS: use security = \"tls\"."
                    if port == implicit_port else "")
        return (f" (no {service} greeting within {wait:.0f} s with security = "
                f"\"{security}\": does the port expect TLS from the first byte?{implicit})")
    return ""


def _oauth2_login(client: Any, username: str, tokens: TokenSource) -> None:
    """SASL XOAUTH2, or OAUTHBEARER (RFC 7628) when the server offers only that; a refused
    token is renewed and tried once more before giving up."""
    caps = {c.upper() for c in client.capabilities()}
    bearer_only = b"AUTH=XOAUTH2" not in caps and b"AUTH=OAUTHBEARER" in caps

    def attempt() -> None:
        if bearer_only:
            client.oauthbearer_login(username, tokens.token())
        else:
            client.oauth2_login(username, tokens.token())

    try:
        attempt()
    except imapclient.exceptions.LoginError:
        tokens.invalidate()
        attempt()


def _text(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:  # "Connection refused", not "111"
        return str(exc.strerror)
    msg = exc.args[0] if exc.args else exc
    if isinstance(msg, bytes):
        msg = msg.decode(errors="replace")
    return str(msg) or type(exc).__name__
