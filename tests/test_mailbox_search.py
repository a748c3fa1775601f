"""UID SEARCH of a big folder goes in windows: imaplib refuses a response line over
1 MB, which one SEARCH answering ~140,000 UIDs is (found by bench.history at 200,000)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from maild.mailbox import SEARCH_WINDOW, ImapSettings, MailboxClient

LINE_LIMIT = 1_000_000  # imaplib._MAXLINE


class BigFolder:
    """An imapclient stand-in for a folder of UIDs 1..`count` (SEARCH SINCE: from UID
    `since_uid` on); a reply line longer than imaplib's limit fails as imaplib does."""

    count = 300_000
    since_uid = 20_000

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.searches: list[list[Any]] = []

    def login(self, *args: Any) -> None:
        pass

    def select_folder(self, folder: str, readonly: bool = False) -> dict[bytes, Any]:
        return {b"UIDVALIDITY": 7, b"UIDNEXT": self.count + 1, b"EXISTS": self.count}

    def search(self, criteria: list[Any]) -> list[int]:
        self.searches.append(criteria)
        lo_s, hi_s = criteria[1].split(":")
        lo, hi = int(lo_s), self.count if hi_s == "*" else int(hi_s)
        first = max(lo, self.since_uid) if "SINCE" in criteria else lo
        found = list(range(first, min(hi, self.count) + 1))
        if len(b"* SEARCH " + " ".join(map(str, found)).encode()) > LINE_LIMIT:
            raise RuntimeError("got more than 1000000 bytes")
        return found

    def logout(self) -> None:
        pass


@pytest.fixture
def client() -> MailboxClient:
    c = MailboxClient(ImapSettings("imap.example.com", 143, "none", "u", "p"),
                      factory=BigFolder).connect()
    c.select("INBOX")
    return c


def test_all_uids_of_a_big_folder_in_windows(client: MailboxClient) -> None:
    assert client.uids_above(0) == list(range(1, 300_001))
    searches = client.client.searches
    assert len(searches) == 300_000 // SEARCH_WINDOW
    assert searches[-1][1].endswith(":*")  # mail that came after SELECT is found too


def test_between_and_since_in_windows(client: MailboxClient) -> None:
    since = datetime(2026, 1, 1, tzinfo=UTC)
    assert client.uids_between(10, 250_000, since) == list(range(20_000, 250_001))
    assert client.uids_between(299_990, 300_010) == list(range(299_990, 300_001))
    assert client.uids_above(299_998) == [299_999, 300_000]
    assert all(not s[1].endswith("*") for s in client.client.searches[:-1])
