"""Small builders for tests: raw messages and a migrated database."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.orm import Session, sessionmaker

from maild.store.db import make_engine, make_sessionmaker, upgrade


def raw_mail(*, frm: str = "Ann Customer <ann@example.org>", to: str = "support@example.com",
             subject: str = "Order missing", msgid: str | None = "<m1@example.org>",
             in_reply_to: str | None = None, references: str | None = None,
             date: str = "Mon, 02 Nov 2026 10:00:00 +0000", body: str = "Hello, my order?",
             extra: str = "") -> bytes:
    lines = [f"From: {frm}", f"To: {to}", f"Subject: {subject}", f"Date: {date}"]
    if msgid:
        lines.append(f"Message-ID: {msgid}")
    if in_reply_to:
        lines.append(f"In-Reply-To: {in_reply_to}")
    if references:
        lines.append(f"References: {references}")
    if extra:
        lines.append(extra.strip("\n"))
    lines += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8", "", body, ""]
    return "\r\n".join(lines).encode()


def migrated_sessions(url: str) -> sessionmaker[Session]:
    engine = make_engine(url)
    upgrade(engine)
    return make_sessionmaker(engine)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


#: The authserv-id the test configs trust (`[sender_auth] trusted_authserv_id`).
TRUSTED_MX = "mx.example.com"


def authenticated(raw: bytes, domain: str = "example.com", *, authserv_id: str = TRUSTED_MX,
                  results: str | None = None) -> bytes:
    """`raw` as the receiving server hands it on: its Authentication-Results on top
    (default: dkim and dmarc pass for `domain`)."""
    found = results or (f"dkim=pass header.d={domain} header.s=s1; "
                        f"dmarc=pass (p=reject) header.from={domain}")
    return f"Authentication-Results: {authserv_id};\r\n {found}\r\n".encode() + raw
