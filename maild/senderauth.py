"""Does the receiving server vouch for a message's sender? Read Authentication-Results.

maild never verifies DKIM or DMARC itself: the mail server that received the
message did, and wrote what it found into an `Authentication-Results` header
(RFC 8601), naming itself with its `authserv-id`. maild believes such a header
only when:

- its authserv-id is the one configured (`[sender_auth] trusted_authserv_id`):
  anyone can write `Authentication-Results: whatever; dkim=pass` into a message
  they send, so a header from any other authserv-id proves nothing;
- it is the TOPMOST header from that authserv-id: receiving servers prepend
  their headers, so the trusted server's own result sits above everything the
  sender wrote, and a copy the sender forged (with the trusted authserv-id) is
  always below it. Only the topmost one counts, not a run of them: nothing marks
  where the receiving server's headers end, and a forger can put a copy directly
  beneath the real one. (opendmarc runs after opendkim and inserts its header
  above it, so the topmost is its `dmarc=` result; a single-header verifier such
  as rspamd, Gmail or an Exchange mail-flow rule writes everything in one.)
  RFC 8601 section 5 asks the receiving server to delete forged copies carrying
  its own authserv-id; docs/agents.md says how, because a message the trusted
  server wrote no header into would otherwise show a forged one at the top;
- it says `dkim=pass` with a signing domain (header.d, else the domain of
  header.i) equal to the domain asked about or a parent of it (relaxed
  alignment: `mail.example.com` signed by `example.com`), or `dmarc=pass` with
  header.from equal to that domain.

The header is parsed with `authres` (the RFC 8601 parser the `authheaders`
package is built on). A header that does not parse counts as no header.
Pure: reads a `ParsedMessage`; no network, no database, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass

import authres

from maild.addresses import unicode_domain
from maild.parse import ParsedMessage

HEADER = "authentication-results"


@dataclass(frozen=True)
class SenderTrust:
    """Who vouches for senders: the authserv-id of the server maild trusts (None: nobody)."""

    authserv_id: str | None = None


@dataclass(frozen=True)
class AuthVerdict:
    """`ok`: the trusted server vouches for `domain`; `reason` says why or why not."""

    ok: bool
    reason: str


def _parse(value: str) -> tuple[str, list[tuple[str, str, dict[str, str]]]] | None:
    """(authserv-id lower-case, [(method, result, {ptype.property: value})]) or None."""
    try:
        header = authres.AuthenticationResultsHeader.parse_value(" ".join(value.split()))
    except Exception:  # noqa: BLE001 - a third-party parser on hostile text: no header
        return None
    results = []
    for r in header.results:
        props = {f"{p.type}.{p.name}".lower(): str(p.value).lower() for p in r.properties}
        results.append((str(r.method).lower(), str(r.result).lower(), props))
    return str(header.authserv_id).lower(), results


def _authserv_token(value: str) -> str:
    """The authserv-id as written (the first word before `;`), lower-case."""
    head = value.split(";", 1)[0].split()
    return head[0].lower() if head else ""


def trusted_results(parsed: ParsedMessage,
                    authserv_id: str) -> list[tuple[str, str, dict[str, str]]] | None:
    """The results in the topmost header from `authserv_id`; None when there is no
    such header or it does not parse (a forged one below it never counts)."""
    wanted = authserv_id.strip().lower()
    for value in parsed.header_all(HEADER):
        if _authserv_token(value) != wanted:
            continue
        header = _parse(value)
        if header is None or header[0] != wanted:
            return None
        return header[1]
    return None


def _domain(value: str) -> str:
    """A domain as maild stores addresses: lower case, no trailing dot, U-labels
    (servers write header.d in A-labels: `xn--rnek-4qa.com.tr` is `örnek.com.tr`)."""
    return unicode_domain("x@" + value.strip().lower().rstrip("."))[2:]


def aligned(signer: str, domain: str) -> bool:
    """True if `signer` is `domain` or a parent domain of it (relaxed alignment)."""
    signer, domain = _domain(signer), _domain(domain)
    return bool(signer) and "." in signer and (domain == signer or
                                               domain.endswith("." + signer))


def _passes(method: str, result: str, props: dict[str, str], domain: str) -> bool:
    if result != "pass":
        return False
    if method == "dkim":
        signer = props.get("header.d") or props.get("header.i", "").rpartition("@")[2]
        return aligned(signer, domain)
    if method == "dmarc":
        return bool(domain) and _domain(props.get("header.from", "")) == _domain(domain)
    return False


def vouches(trust: SenderTrust, parsed: ParsedMessage, address: str) -> AuthVerdict:
    """Does the trusted server vouch that `address`'s domain sent `parsed`?"""
    if not trust.authserv_id:
        return AuthVerdict(False, "no trusted server configured "
                                  "([sender_auth] trusted_authserv_id)")
    domain = _domain(address.rpartition("@")[2])
    if not domain:
        return AuthVerdict(False, "no sender domain")
    results = trusted_results(parsed, trust.authserv_id)
    if results is None:
        return AuthVerdict(False, f"no readable Authentication-Results from "
                                  f"{trust.authserv_id}")
    for method, result, props in results:
        if _passes(method, result, props, domain):
            return AuthVerdict(True, f"{method}=pass for {domain} ({trust.authserv_id})")
    seen = ", ".join(f"{m}={r}" for m, r, _ in results if m in ("dkim", "dmarc")) or "none"
    return AuthVerdict(False, f"no dkim or dmarc pass aligned with {domain} from "
                              f"{trust.authserv_id} (found: {seen})")
