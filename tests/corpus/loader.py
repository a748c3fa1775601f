"""Load a golden mail corpus (``tests/corpus/<name>/manifest.json`` + ``.eml`` files).

A corpus is a list of raw messages as an IMAP server would hand them over
(folder, INTERNALDATE, bytes) plus the tickets maild is expected to build
from them. The manifest lists messages in ingest order: every INBOX message
first, then every Sent message; ``Corpus.ingest_order()`` returns exactly
that, and tickets are numbered in the order that ingest creates them.

Loading checks only what it needs to build the values (fields present,
files readable, dates aware); the full self-consistency checks live in
``tests/test_corpus_wellformed.py``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

CORPUS_ROOT = Path(__file__).resolve().parent
FOLDERS = ("INBOX", "Sent")
RULES = ("new", "references", "subject-tag", "subject-fallback")


class CorpusError(ValueError):
    """The manifest is malformed; the message names the corpus and the entry."""


@dataclass(frozen=True)
class CorpusMessage:
    """One raw message as fetched from the mailbox."""

    file: str
    path: Path
    folder: str  # "INBOX" or "Sent"
    internaldate: datetime  # aware
    raw: bytes
    rule: str = ""  # expected threading rule: new | references | subject-tag | subject-fallback
    broken: bool = False  # deliberately malformed MIME
    absurd_date: bool = False  # Date header wrong by years
    note: str = ""

    @property
    def role(self) -> str:
        """maild's folder role: "inbox" or "sent"."""
        return "sent" if self.folder == "Sent" else "inbox"

    @property
    def outbound(self) -> bool:
        return self.folder == "Sent"


@dataclass(frozen=True)
class ExpectedTicket:
    number: int
    subject: str  # exact decoded Subject of the ticket's first message
    customer: str  # lower-cased address
    messages: tuple[str, ...]  # file names, arrival order
    first_agent_reply: str | None
    agent_replies: int
    why: str = ""
    draft_macro: str | None = None  # the macro to answer its first message with; None: none fits


@dataclass(frozen=True)
class Corpus:
    name: str
    root: Path
    mailbox: str
    messages: tuple[CorpusMessage, ...]  # manifest order == ingest order
    tickets: tuple[ExpectedTicket, ...]
    comment: tuple[str, ...] = ()

    def message(self, file: str) -> CorpusMessage:
        for msg in self.messages:
            if msg.file == file:
                return msg
        raise KeyError(f"corpus {self.name!r} has no message {file!r}")

    def ticket(self, number: int) -> ExpectedTicket:
        for ticket in self.tickets:
            if ticket.number == number:
                return ticket
        raise KeyError(f"corpus {self.name!r} has no ticket {number}")

    def ticket_of(self, file: str) -> ExpectedTicket:
        """The expected ticket that holds message `file`."""
        for ticket in self.tickets:
            if file in ticket.messages:
                return ticket
        raise KeyError(f"corpus {self.name!r}: no ticket holds {file!r}")

    def folder(self, folder: str) -> tuple[CorpusMessage, ...]:
        return tuple(m for m in self.messages if m.folder == folder)

    def ingest_order(self) -> tuple[CorpusMessage, ...]:
        """All INBOX messages in manifest order, then all Sent messages."""
        return self.folder("INBOX") + self.folder("Sent")


def _require(entry: dict[str, Any], key: str, where: str) -> Any:
    if key not in entry:
        raise CorpusError(f"{where}: missing field {key!r}")
    return entry[key]


def _aware(value: str, where: str) -> datetime:
    try:
        dt = datetime.fromisoformat(value)
    except (TypeError, ValueError) as exc:
        raise CorpusError(f"{where}: internaldate {value!r} is not ISO 8601") from exc
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise CorpusError(f"{where}: internaldate {value!r} has no UTC offset")
    return dt


def load_corpus(name: str, root: Path | None = None) -> Corpus:
    """Read ``<root>/<name>/manifest.json`` and every message file it lists."""
    base = (root or CORPUS_ROOT) / name
    manifest_path = base / "manifest.json"
    try:
        data = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CorpusError(f"no corpus {name!r}: {manifest_path} does not exist") from exc
    except json.JSONDecodeError as exc:
        raise CorpusError(f"{manifest_path}: invalid JSON: {exc}") from exc

    messages = []
    for i, entry in enumerate(_require(data, "messages", str(manifest_path))):
        where = f"{manifest_path}: messages[{i}]"
        file = _require(entry, "file", where)
        where = f"{manifest_path}: {file}"
        folder = _require(entry, "folder", where)
        if folder not in FOLDERS:
            raise CorpusError(f"{where}: folder {folder!r} is not one of {FOLDERS}")
        rule = entry.get("rule", "")
        if rule and rule not in RULES:
            raise CorpusError(f"{where}: rule {rule!r} is not one of {RULES}")
        path = base / file
        try:
            raw = path.read_bytes()
        except FileNotFoundError as exc:
            raise CorpusError(f"{where}: file {path} does not exist") from exc
        messages.append(CorpusMessage(
            file=file, path=path, folder=folder,
            internaldate=_aware(_require(entry, "internaldate", where), where), raw=raw,
            rule=rule, broken=bool(entry.get("broken", False)),
            absurd_date=bool(entry.get("absurd_date", False)), note=entry.get("note", "")))

    tickets = []
    for i, entry in enumerate(_require(data, "tickets", str(manifest_path))):
        where = f"{manifest_path}: tickets[{i}]"
        tickets.append(ExpectedTicket(
            number=int(_require(entry, "number", where)),
            subject=_require(entry, "subject", where),
            customer=_require(entry, "customer", where).lower(),
            messages=tuple(_require(entry, "messages", where)),
            first_agent_reply=entry.get("first_agent_reply"),
            agent_replies=int(_require(entry, "agent_replies", where)),
            why=entry.get("why", ""), draft_macro=entry.get("draft_macro")))

    comment = data.get("comment", ())
    if isinstance(comment, str):
        comment = (comment,)
    return Corpus(name=name, root=base, mailbox=_require(data, "mailbox", str(manifest_path)),
                  messages=tuple(messages), tickets=tuple(tickets), comment=tuple(comment))
