"""What counts as a usable email address: one maild may reply to or hand to SMTP.

Python's header parser returns whatever sat in a mangled From header (e.g.
`Ann ann@example.org <ann@example.org>` gives the address "Ann ann@example.org"),
and SMTP libraries either refuse such a string or quietly rewrite it. maild
checks once, here, with a deliberately plain rule: one `@`, no whitespace,
control characters, brackets or quotes. Quoted local parts and IP literals are
legal but refused (no customer writes from them; refusing costs an auto-reply,
accepting could send mail somewhere unintended). No I/O, no DNS.
"""

from __future__ import annotations

import re

_ATOMS = r"[^\s@<>()\[\],;:\\\"\x00-\x1f\x7f]+"
_MAILBOX_RE = re.compile(f"{_ATOMS}@{_ATOMS}")


def usable_address(addr: str) -> bool:
    """True for a plain addr-spec such as `ann+tag@example.co.uk`."""
    return bool(_MAILBOX_RE.fullmatch(addr))
