"""What counts as a usable email address: one maild may reply to or hand to SMTP.

Python's header parser returns whatever sat in a mangled From header (e.g.
`Ann ann@example.org <ann@example.org>` gives the address "Ann ann@example.org"),
and SMTP libraries either refuse such a string or quietly rewrite it. maild
checks once, here, with a deliberately plain rule: one `@`, no whitespace,
control characters, brackets or quotes. Quoted local parts and IP literals are
legal but refused (no customer writes from them; refusing costs an auto-reply,
accepting could send mail somewhere unintended). No I/O, no DNS.

Internationalised addresses (RFC 6531/6532: `ayşe@örnek.com.tr`) are usable and are
kept in their Unicode form; a domain that arrives as A-labels (`xn--rnek-4qa.com.tr`)
is turned into its U-labels by `unicode_domain`, so one customer is one address
whichever form their client wrote. C1 controls and U+FFFD (bytes that were not
UTF-8) make an address unusable: replying to it could only bounce.
"""

from __future__ import annotations

import contextlib
import encodings.idna
import re

_ATOMS = r"[^\s@<>()\[\],;:\\\"\x00-\x1f\x7f-\x9f\ufffd]+"
_MAILBOX_RE = re.compile(f"{_ATOMS}@{_ATOMS}")
ACE_PREFIX = "xn--"


def usable_address(addr: str) -> bool:
    """True for a plain addr-spec such as `ann+tag@example.co.uk` or `山田@例え.jp`."""
    return bool(_MAILBOX_RE.fullmatch(addr))


def unicode_domain(addr: str) -> str:
    """`addr` with each A-label of its domain decoded to its U-label; all else unchanged.

    Python's `encodings.idna` (IDNA 2003) decodes and checks the label (it must encode
    back to the same A-label). A label it refuses (not punycode, or valid only under
    IDNA 2008, e.g. `xn--fa-hia` for `faß`) is kept as it came.
    """
    local, at, domain = addr.rpartition("@")
    if not at or ACE_PREFIX not in domain.lower():
        return addr
    labels = domain.split(".")
    for i, label in enumerate(labels):
        if label.lower().startswith(ACE_PREFIX):
            with contextlib.suppress(UnicodeError, ValueError):  # kept as it came
                labels[i] = encodings.idna.ToUnicode(label.lower())
    return f"{local}@{'.'.join(labels)}"
