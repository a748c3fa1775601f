"""Reading Authentication-Results: only the topmost header from the trusted server,
only dkim/dmarc pass aligned with the sender's domain."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maild.parse import parse_message
from maild.senderauth import SenderTrust, aligned, trusted_results, vouches
from tests.builders import TRUSTED_MX, authenticated, raw_mail

TRUST = SenderTrust(TRUSTED_MX)
AGENT = "ayse@example.com"


def verdict(raw: bytes, address: str = AGENT, trust: SenderTrust = TRUST) -> tuple[bool, str]:
    found = vouches(trust, parse_message(raw), address)
    return found.ok, found.reason


def test_dkim_or_dmarc_pass_from_the_trusted_server_vouches() -> None:
    assert verdict(authenticated(raw_mail(frm=AGENT)))[0]
    dkim_only = authenticated(raw_mail(frm=AGENT), results="dkim=pass header.d=example.com")
    assert verdict(dkim_only) == (True, f"dkim=pass for example.com ({TRUSTED_MX})")
    dmarc_only = authenticated(raw_mail(frm=AGENT), results="spf=fail smtp.mailfrom=x@y.z; "
                               "dmarc=pass header.from=example.com")
    assert verdict(dmarc_only)[0]
    gmail = authenticated(raw_mail(frm=AGENT), authserv_id="mx.google.com", results=(
        "dkim=pass header.i=@example.com header.s=google header.b=Ab1;\r\n       spf=pass "
        "(google.com: domain of a@example.com designates 1.2.3.4 as permitted sender) "
        "smtp.mailfrom=a@example.com"))
    assert verdict(gmail, trust=SenderTrust("mx.google.com"))[0]


def test_no_trusted_server_configured_refuses() -> None:
    ok, reason = verdict(authenticated(raw_mail(frm=AGENT)), trust=SenderTrust(None))
    assert not ok and "trusted_authserv_id" in reason


def test_forged_from_without_header_is_not_vouched_for() -> None:
    ok, reason = verdict(raw_mail(frm=AGENT))
    assert not ok and TRUSTED_MX in reason


def test_header_from_another_authserv_id_counts_for_nothing() -> None:
    ok, _ = verdict(authenticated(raw_mail(frm=AGENT), authserv_id="mx.attacker.example"))
    assert not ok


@pytest.mark.parametrize("results", [
    "dkim=pass header.d=attacker.example; dmarc=fail header.from=example.com",
    "dkim=pass header.d=com",                      # a public suffix never aligns
    "dkim=pass header.d=notexample.com",
    "dmarc=pass header.from=sub.example.com",     # DMARC names the From domain exactly
    "spf=pass smtp.mailfrom=ayse@example.com",     # SPF alone is no alignment with From
    "dkim=fail header.d=example.com; dmarc=fail header.from=example.com",
    "dkim=temperror header.d=example.com",
    "none",
])
def test_unaligned_or_failed_results_are_refused(results: str) -> None:
    ok, reason = verdict(authenticated(raw_mail(frm=AGENT), results=results))
    assert not ok, reason


def test_relaxed_alignment_accepts_a_parent_signing_domain() -> None:
    raw = authenticated(raw_mail(frm="a@mail.example.com"),
                        results="dkim=pass header.d=example.com")
    assert verdict(raw, "a@mail.example.com")[0]
    assert aligned("example.com", "EXAMPLE.com.") and not aligned("ample.com", "example.com")


def test_idn_domains_align_in_either_form() -> None:
    """Servers write header.d in A-labels; maild keeps addresses in U-labels."""
    frm = "ayse@örnek.com.tr"
    raw = authenticated(raw_mail(frm=frm), results="dkim=pass header.d=xn--rnek-4qa.com.tr")
    assert parse_message(raw).from_addr == frm and verdict(raw, frm)[0]
    dmarc = authenticated(raw_mail(frm=frm), results="dmarc=pass header.from=xn--rnek-4qa.com.tr")
    assert verdict(dmarc, frm)[0]


def test_only_the_topmost_trusted_header_counts() -> None:
    """The sender writes below what the receiving server prepends: a forged pass
    beneath the real fail (or beneath an unreadable real header) is ignored."""
    forged = authenticated(raw_mail(frm=AGENT))  # the sender's own copy, trusted id
    real_fail = authenticated(forged, results="dmarc=fail header.from=example.com")
    assert not verdict(real_fail)[0]
    unreadable = authenticated(forged, results="dkim=pass = = ;;")
    assert not verdict(unreadable)[0]
    other_on_top = authenticated(forged, authserv_id="spam.example.com", results="none")
    assert verdict(other_on_top)[0]  # another server's header above does not hide it


def test_header_without_authserv_id_is_skipped() -> None:
    """Exchange Online writes no authserv-id: such a header is never the trusted one."""
    microsoft = ("Authentication-Results: spf=pass (sender IP is 1.2.3.4) "
                 "smtp.mailfrom=example.com; dkim=pass (signature was verified) "
                 "header.d=example.com;dmarc=pass action=none header.from=example.com;\r\n")
    raw = microsoft.encode() + raw_mail(frm=AGENT)
    assert trusted_results(parse_message(raw), TRUSTED_MX) is None
    assert not verdict(raw)[0]


@settings(max_examples=300, deadline=None)
@given(value=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=120))
def test_any_header_text_is_read_without_raising(value: str) -> None:
    raw = raw_mail(frm=AGENT, extra="Authentication-Results: " + TRUSTED_MX + "; " +
                   " ".join(value.split()))
    found = vouches(TRUST, parse_message(raw), AGENT)
    assert found.ok in (True, False) and found.reason
