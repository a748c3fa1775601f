"""Loop guard: realistic raw messages, parsed for real, with the exact reason expected."""

from __future__ import annotations

import textwrap

import pytest

from maild.classify import classify
from maild.classify.markers import TABLES
from maild.compose import AUTO_HEADERS
from maild.loopguard import (
    GuardContext,
    Verdict,
    check_message,
)
from maild.parse import ParsedMessage, parse_message

CTX = GuardContext(own_addresses=frozenset({"support@example.com", "billing@example.com"}))


def raw(text: str) -> bytes:
    """A message as it sits in the mailbox: dedented, CRLF line ends, UTF-8 bytes."""
    return textwrap.dedent(text).lstrip("\n").replace("\n", "\r\n").encode("utf-8")


def verdict_of(text: str, ctx: GuardContext = CTX) -> Verdict:
    return check_message(parse_message(raw(text)), ctx)


def without(text: str, *names: str) -> str:
    """`text` with every header line named in `names` removed (no folded headers)."""
    lowered = tuple(n.lower() + ":" for n in names)
    return "\n".join(
        line for line in text.split("\n") if not line.lstrip().lower().startswith(lowered)
    )


EXCHANGE_OOF = """
    Received: from AM0PR01MB1234.eurprd01.prod.exchangelabs.com (2603:10a6:208:1::12)
     by AM0PR01MB5678.eurprd01.prod.exchangelabs.com with HTTPS; Mon, 3 Jun 2024 07:12:45 +0000
    Return-Path: <>
    From: =?utf-8?B?QXnFn2UgWcSxbG1heg==?= <ayse.yilmaz@contoso.com>
    To: Support <support@example.com>
    Subject: Automatic reply: [#42] Order 4411 delayed
    Thread-Topic: [#42] Order 4411 delayed
    Thread-Index: AQHatZ3Lq1m6fW0mP0ejy2+5a3Q9dLG2Yk0A
    Date: Mon, 3 Jun 2024 07:12:44 +0000
    Message-ID: <c1d2e3f4a5b6@AM0PR01MB1234.eurprd01.prod.exchangelabs.com>
    In-Reply-To: <ticket-42.1717398000@example.com>
    References: <ticket-42.1717398000@example.com>
    Content-Language: en-US
    X-MS-Has-Attach:
    X-MS-Exchange-Organization-SCL: -1
    X-MS-TNEF-Correlator:
    X-MS-Exchange-Organization-RecordReviewCfmType: 0
    x-auto-response-suppress: All
    X-MS-Exchange-Inbox-Rules-Loop: ayse.yilmaz@contoso.com
    auto-submitted: auto-generated
    X-MS-Exchange-Transport-CrossTenantHeadersStamped: AM0PR01MB5678
    Content-Type: text/plain; charset="utf-8"
    Content-Transfer-Encoding: 8bit
    MIME-Version: 1.0

    I am out of the office until 10 June with limited access to email.
    Ofisten uzaktayım, 10 Haziran'da döneceğim.
    """

EXCHANGE_RULE_REPLY = """
    Return-Path: <>
    From: Procurement <procurement@contoso.com>
    To: support@example.com
    Subject: RE: [#43] Quote request
    Date: Mon, 3 Jun 2024 09:30:00 +0000
    Message-ID: <f00d@DB9PR01MB1111.eurprd01.prod.exchangelabs.com>
    X-MS-Exchange-Generated-Message-Source: Mailbox Rules Agent
    X-MS-Exchange-Organization-AuthAs: Internal
    Content-Type: text/plain; charset="us-ascii"
    MIME-Version: 1.0

    Thank you for your message. This mailbox is monitored Monday to Friday.
    """

GMAIL_VACATION = """
    Return-Path: <mehmet.kaya@gmail.com>
    Received: by mail-sor-f41.google.com with SMTP id 2adb3069b0e04-52b8e0e98a6sor123456e87.3
            for <support@example.com>; Mon, 03 Jun 2024 00:15:03 -0700 (PDT)
    MIME-Version: 1.0
    From: Mehmet Kaya <mehmet.kaya@gmail.com>
    Date: Mon, 3 Jun 2024 10:15:02 +0300
    Message-ID: <CAFk7bq9a=vacation-1717398902@mail.gmail.com>
    Subject: Tatildeyim / On vacation
    To: support@example.com
    In-Reply-To: <ticket-44.1717398000@example.com>
    References: <ticket-44.1717398000@example.com>
    Auto-Submitted: auto-replied
    Content-Type: multipart/alternative; boundary="000000000000a1b2c3d4e5f6"

    --000000000000a1b2c3d4e5f6
    Content-Type: text/plain; charset="UTF-8"

    17 Haziran'a kadar izindeyim. I am on leave until 17 June.

    --000000000000a1b2c3d4e5f6
    Content-Type: text/html; charset="UTF-8"

    <div dir="ltr">17 Haziran'a kadar izindeyim. I am on leave until 17 June.</div>

    --000000000000a1b2c3d4e5f6--
    """

POSTFIX_DSN = """
    Return-Path: <>
    Received: by mx.example.net (Postfix) id 7D6A21C0A2B; Mon,  3 Jun 2024 09:00:05 +0200 (CEST)
    Date: Mon,  3 Jun 2024 09:00:05 +0200 (CEST)
    From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
    Subject: Undelivered Mail Returned to Sender
    To: support@example.com
    Auto-Submitted: auto-replied
    MIME-Version: 1.0
    Content-Type: multipart/report; report-type=delivery-status;
    \tboundary="6F0F61C0A2A.1717398005/mx.example.net"
    Content-Transfer-Encoding: 7bit
    Message-Id: <20240603070005.7D6A21C0A2B@mx.example.net>

    This is a MIME-encapsulated message.

    --6F0F61C0A2A.1717398005/mx.example.net
    Content-Description: Notification
    Content-Type: text/plain; charset=us-ascii

    This is the mail system at host mx.example.net.

    I'm sorry to have to inform you that your message could not
    be delivered to one or more recipients.

    <nobody@customer.example>: host mail.customer.example[192.0.2.25] said:
        550 5.1.1 <nobody@customer.example>: Recipient address rejected: User unknown

    --6F0F61C0A2A.1717398005/mx.example.net
    Content-Description: Delivery report
    Content-Type: message/delivery-status

    Reporting-MTA: dns; mx.example.net
    X-Postfix-Queue-ID: 6F0F61C0A2A
    X-Postfix-Sender: rfc822; support@example.com
    Arrival-Date: Mon,  3 Jun 2024 09:00:04 +0200 (CEST)

    Final-Recipient: rfc822; nobody@customer.example
    Original-Recipient: rfc822;nobody@customer.example
    Action: failed
    Status: 5.1.1
    Remote-MTA: dns; mail.customer.example
    Diagnostic-Code: smtp; 550 5.1.1 <nobody@customer.example>: Recipient address
        rejected: User unknown

    --6F0F61C0A2A.1717398005/mx.example.net
    Content-Description: Undelivered Message Headers
    Content-Type: text/rfc822-headers

    Return-Path: <support@example.com>
    From: Support <support@example.com>
    To: nobody@customer.example
    Subject: [#45] We received your request
    Auto-Submitted: auto-replied
    Message-ID: <ticket-45.eta@example.com>

    --6F0F61C0A2A.1717398005/mx.example.net--
    """

OUTLOOK_MDN = """
    Return-Path: <ali.demir@customer.com.tr>
    From: Ali Demir <ali.demir@customer.com.tr>
    To: Support <support@example.com>
    Subject: =?utf-8?Q?Okundu:_[#46]_Fatura_hatas=C4=B1?=
    Date: Mon, 3 Jun 2024 11:02:10 +0300
    Message-ID: <mdn-0001@AM9PR01MB7890.eurprd01.prod.exchangelabs.com>
    MIME-Version: 1.0
    Content-Type: multipart/report; report-type=disposition-notification;
    \tboundary="----=_NextPart_000_0001_01DAB5A1.00000000"

    ------=_NextPart_000_0001_01DAB5A1.00000000
    Content-Type: text/plain; charset="utf-8"

    Your message was read on Monday, 3 June 2024 11:02:10 (UTC+03:00) Istanbul.

    ------=_NextPart_000_0001_01DAB5A1.00000000
    Content-Type: message/disposition-notification

    Reporting-UA: AM9PR01MB7890.eurprd01.prod.exchangelabs.com; Microsoft Outlook 16.0
    Final-Recipient: rfc822;ali.demir@customer.com.tr
    Original-Message-ID: <ticket-46.1717398000@example.com>
    Disposition: manual-action/MDN-sent-manually; displayed

    ------=_NextPart_000_0001_01DAB5A1.00000000--
    """

MAILMAN_POST = """
    Return-Path: <users-bounces+support=example.com@lists.example.org>
    From: Jane Doe <jane@example.org>
    To: users@lists.example.org
    Subject: [users] How do I export my data?
    Date: Mon, 3 Jun 2024 12:00:00 +0000
    Message-ID: <87wmn4q2zq.fsf@example.org>
    Precedence: list
    List-Id: Users of Example <users.lists.example.org>
    List-Unsubscribe: <mailto:users-leave@lists.example.org>
    List-Post: <mailto:users@lists.example.org>
    List-Help: <mailto:users-request@lists.example.org?subject=help>
    List-Subscribe: <mailto:users-join@lists.example.org>
    X-Mailman-Version: 3.3.9
    Content-Type: text/plain; charset="us-ascii"
    MIME-Version: 1.0

    Hi all, is there a way to export everything as CSV?
    """

NEWSLETTER = """
    Return-Path: <bounce-mc.us5_12345.67890-support=example.com@mail123.mcsv.net>
    From: Acme Weekly <news@acme.io>
    To: support@example.com
    Subject: This week at Acme: 5 new features
    Date: Tue, 4 Jun 2024 15:00:00 +0000
    Message-ID: <a1b2c3.news@mail123.mcsv.net>
    List-Unsubscribe: <https://acme.us5.list-manage.com/unsubscribe?u=1&id=2>
    List-Unsubscribe-Post: List-Unsubscribe=One-Click
    Content-Type: text/plain; charset="utf-8"
    MIME-Version: 1.0

    Hello! Here is what's new.
    """

NOREPLY_INVOICE = """
    Return-Path: <bounces+1234-ab12-support=example.com@em.billing.acme.io>
    From: Acme Billing <no-reply+inv2024@billing.acme.io>
    To: support@example.com
    Subject: Your invoice INV-2024-0613 is ready
    Date: Thu, 13 Jun 2024 06:00:00 +0000
    Message-ID: <inv-2024-0613@billing.acme.io>
    Content-Type: text/plain; charset="utf-8"
    MIME-Version: 1.0

    Your invoice is attached. Please do not reply to this email.
    """

AGENT_FROM_OWN_ADDRESS = """
    Return-Path: <support@example.com>
    From: Example Support <Support@Example.com>
    To: Ali Demir <ali.demir@customer.com.tr>
    Subject: Re: [#46] Fatura hatası
    Date: Mon, 3 Jun 2024 13:00:00 +0300
    Message-ID: <agent-reply-1@example.com>
    In-Reply-To: <AM9PR01MB7890ABCDEF@AM9PR01MB7890.eurprd01.prod.exchangelabs.com>
    Content-Type: text/plain; charset="utf-8"
    MIME-Version: 1.0

    Merhaba Ali Bey, faturanız düzeltildi.
    """

CUSTOMER = """
    Return-Path: <zeynep@customer.com.tr>
    From: =?utf-8?Q?Zeynep_=C3=87elik?= <zeynep@customer.com.tr>
    To: support@example.com
    Subject: =?utf-8?Q?Sipari=C5=9Fim_gelmedi?=
    Date: Mon, 3 Jun 2024 10:00:00 +0300
    Message-ID: <7f3a9c1e-1d2b-4c5d-9e8f-0a1b2c3d4e5f@customer.com.tr>
    User-Agent: Mozilla Thunderbird
    X-Priority: 1 (Highest)
    Content-Type: text/plain; charset=UTF-8; format=flowed
    Content-Transfer-Encoding: 8bit
    MIME-Version: 1.0

    Merhaba, siparişim hâlâ gelmedi, yardımcı olur musunuz?
    Sipariş no: 4411
    """

OUTLOOK_CUSTOMER = """
    Received: from DB9PR01MB1111.eurprd01.prod.exchangelabs.com (2603:10a6:10:2::3)
     by mx.example.com with ESMTPS; Mon, 3 Jun 2024 08:01:13 +0000
    Return-Path: ali.demir@customer.com.tr
    From: Ali Demir <ali.demir@customer.com.tr>
    To: "support@example.com" <support@example.com>
    Subject: =?utf-8?B?RmF0dXJhIGhhdGFzxLE=?=
    Thread-Topic: =?utf-8?B?RmF0dXJhIGhhdGFzxLE=?=
    Thread-Index: AdqzQ1bEXAMPLEu9RkWm1oQx0vY6Aw==
    Date: Mon, 3 Jun 2024 08:01:12 +0000
    Message-ID: <AM9PR01MB7890ABCDEF@AM9PR01MB7890.eurprd01.prod.exchangelabs.com>
    Accept-Language: tr-TR, en-US
    Content-Language: tr-TR
    X-MS-Has-Attach:
    X-MS-TNEF-Correlator:
    authentication-results: dkim=none (message not signed) header.d=none;
     dmarc=none action=none header.from=customer.com.tr;
    x-ms-publictraffictype: Email
    x-ms-traffictypediagnostic: AM9PR01MB7890:EE_|DB9PR01MB1111:EE_
    x-ms-office365-filtering-correlation-id: 5d1c2b3a-0000-4000-8000-123456789abc
    x-ms-exchange-senderadcheck: 1
    x-ms-exchange-antispam-relay: 0
    x-microsoft-antispam: BCL:0;
    x-forefront-antispam-report: CIP:255.255.255.255;CTRY:;LANG:tr;SCL:1;SRV:;IPV:NLI;SFV:NSPM;
    x-ms-exchange-antispam-messagedata-chunkcount: 1
    Content-Type: text/plain; charset="utf-8"
    Content-Transfer-Encoding: 8bit
    MIME-Version: 1.0
    X-OriginatorOrg: customer.com.tr
    X-MS-Exchange-CrossTenant-AuthAs: Internal
    X-MS-Exchange-CrossTenant-AuthSource: AM9PR01MB7890.eurprd01.prod.exchangelabs.com
    X-MS-Exchange-CrossTenant-Network-Message-Id: 5d1c2b3a-0000-4000-8000-123456789abc
    X-MS-Exchange-CrossTenant-originalarrivaltime: 03 Jun 2024 08:01:12.3456 (UTC)
    X-MS-Exchange-CrossTenant-fromentityheader: Hosted
    X-MS-Exchange-Transport-CrossTenantHeadersStamped: DB9PR01MB1111
    X-MS-Exchange-Organization-AuthAs: Anonymous

    Merhaba, geçen ayki faturamda iki kez ücret alınmış. Kontrol edebilir misiniz?
    """

FORWARDED_BOUNCE = """
    Return-Path: <zeynep@customer.com.tr>
    From: Zeynep Celik <zeynep@customer.com.tr>
    To: support@example.com
    Subject: Fwd: Undelivered Mail Returned to Sender
    Date: Mon, 3 Jun 2024 10:30:00 +0300
    Message-ID: <fwd-bounce-1@customer.com.tr>
    MIME-Version: 1.0
    Content-Type: multipart/mixed; boundary="outer"

    --outer
    Content-Type: text/plain; charset=utf-8

    Hi, my mail to your sales team bounced, see below. Can you help?

    --outer
    Content-Type: message/rfc822

    From: MAILER-DAEMON@mx.customer.com.tr (Mail Delivery System)
    To: zeynep@customer.com.tr
    Subject: Undelivered Mail Returned to Sender
    Auto-Submitted: auto-replied
    MIME-Version: 1.0
    Content-Type: multipart/report; report-type=delivery-status; boundary="inner"

    --inner
    Content-Type: text/plain

    Your message could not be delivered.

    --inner
    Content-Type: message/delivery-status

    Reporting-MTA: dns; mx.customer.com.tr

    Final-Recipient: rfc822; sales@example.com
    Action: failed
    Status: 5.1.1

    --inner--

    --outer--
    """


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        pytest.param(EXCHANGE_OOF, "vendor-autoreply", id="exchange-out-of-office"),
        pytest.param(EXCHANGE_RULE_REPLY, "vendor-autoreply", id="exchange-inbox-rule-reply"),
        pytest.param(GMAIL_VACATION, "auto-submitted", id="gmail-vacation"),
        pytest.param(POSTFIX_DSN, "report-content", id="postfix-dsn-bounce"),
        pytest.param(OUTLOOK_MDN, "report-content", id="outlook-read-receipt"),
        pytest.param(MAILMAN_POST, "list-headers", id="mailing-list-post"),
        pytest.param(NEWSLETTER, "list-headers", id="newsletter"),
        pytest.param(NOREPLY_INVOICE, "machine-sender", id="noreply-sender"),
        pytest.param(AGENT_FROM_OWN_ADDRESS, "own-address", id="own-address"),
    ],
)
def test_automated_messages_are_flagged_with_exact_reason(text: str, reason: str) -> None:
    verdict = verdict_of(text)
    assert verdict.automated is True
    assert verdict.reason == reason
    assert verdict.description


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(CUSTOMER, id="thunderbird-customer"),
        pytest.param(OUTLOOK_CUSTOMER, id="outlook-customer-with-x-ms-exchange-headers"),
        pytest.param(FORWARDED_BOUNCE, id="customer-forwards-a-bounce"),
    ],
)
def test_human_mail_is_not_flagged(text: str) -> None:
    assert verdict_of(text) == Verdict(False, None, None)


def test_auto_submitted_no_is_human() -> None:
    text = CUSTOMER.replace(
        "User-Agent:", "Auto-Submitted: No (composed by a person)\n    User-Agent:"
    )
    msg = parse_message(raw(text))
    assert msg.header("Auto-Submitted") == "No (composed by a person)"
    assert check_message(msg, CTX).automated is False


@pytest.mark.parametrize(
    "value", ["auto-generated", "Auto-Replied", "auto-notified; owner-email=x@y.z", "x-custom"]
)
def test_auto_submitted_any_value_but_no(value: str) -> None:
    text = CUSTOMER.replace("User-Agent:", f"Auto-Submitted: {value}\n    User-Agent:")
    assert verdict_of(text).reason == "auto-submitted"


def test_exchange_oof_is_caught_even_without_auto_submitted() -> None:
    """Defence in depth: strip the markers one by one, something still catches it.

    Auto-Submitted: auto-generated says "a machine", the inbox-rules loop header and
    the "Automatic reply:" subject say "an auto-reply": those name the reason (and the
    kind), as the auto-reply markers come before the generic notification ones."""
    assert verdict_of(without(EXCHANGE_OOF, "auto-submitted")).reason == "vendor-autoreply"
    text = without(EXCHANGE_OOF, "X-MS-Exchange-Inbox-Rules-Loop")
    assert verdict_of(text).reason == "autoreply-subject"
    text = text.replace("Subject: Automatic reply: [#42]", "Subject: [#42]")
    assert verdict_of(text).reason == "auto-submitted"
    text = without(text, "auto-submitted")
    assert verdict_of(text).reason == "empty-return-path"
    text = without(text, "Return-Path")
    assert verdict_of(text).reason == "auto-response-suppress"
    assert verdict_of(without(text, "x-auto-response-suppress")).automated is False


def test_dsn_without_report_headers_is_still_caught() -> None:
    text = without(POSTFIX_DSN, "auto-submitted")
    assert verdict_of(text).reason == "report-content"
    malformed = POSTFIX_DSN.replace(
        "Content-Type: multipart/report; report-type=delivery-status;",
        "Content-Type: multipart/report report-type=delivery-status",
    )
    msg = parse_message(raw(malformed))
    assert msg.content_type != "multipart/report"
    assert check_message(msg, CTX).reason == "report-content"


def test_gmail_vacation_from_a_person_without_the_header_is_human() -> None:
    assert verdict_of(without(GMAIL_VACATION, "Auto-Submitted")).automated is False


@pytest.mark.parametrize("value", ["bulk", "list", "junk", "auto_reply", "Bulk (newsletter)"])
def test_precedence(value: str) -> None:
    text = CUSTOMER.replace("User-Agent:", f"Precedence: {value}\n    User-Agent:")
    assert verdict_of(text).reason == "precedence"


def test_x_precedence_and_first_class() -> None:
    text = CUSTOMER.replace("User-Agent:", "X-Precedence: junk\n    User-Agent:")
    assert verdict_of(text).reason == "precedence"
    text = CUSTOMER.replace("User-Agent:", "Precedence: first-class\n    User-Agent:")
    assert verdict_of(text).automated is False


@pytest.mark.parametrize(
    ("value", "automated"),
    [("All", True), ("DR, OOF, AutoReply", True), ("oof", True), ("DR, RN, NRN", False)],
)
def test_auto_response_suppress(value: str, automated: bool) -> None:
    text = CUSTOMER.replace("User-Agent:", f"X-Auto-Response-Suppress: {value}\n    User-Agent:")
    verdict = verdict_of(text)
    assert verdict.automated is automated
    assert verdict.reason == ("auto-response-suppress" if automated else None)


@pytest.mark.parametrize(
    "header",
    ["X-Autoreply: yes", "X-Autorespond: Vacation", "X-Autoresponder: 1", "X-Autogenerated: Reply"],
)
def test_vendor_autoreply_headers(header: str) -> None:
    text = CUSTOMER.replace("User-Agent:", f"{header}\n    User-Agent:")
    assert verdict_of(text).reason == "vendor-autoreply"


def test_vendor_header_saying_no_is_human() -> None:
    text = CUSTOMER.replace("User-Agent:", "X-Autoreply: no\n    User-Agent:")
    assert verdict_of(text).automated is False


@pytest.mark.parametrize(
    "local",
    [
        "mailer-daemon",
        "MAILER-DAEMON",
        "postmaster",
        "noreply",
        "no-reply",
        "no_reply",
        "no.reply",
        "donotreply",
        "do-not-reply",
        "do_not_reply",
        "bounce",
        "bounces",
        "notifications",
        "notification",
        "no-reply+abc",
        "noreply-123",
        "team.noreply",
        "noreply-dmarc-support",
        "bounce-mc.us5_1234.56-user=example.com",
    ],
)
def test_machine_local_parts(local: str) -> None:
    msg = ParsedMessage(message_id="<m@x>", subject="s", from_addr=f"{local}@example.org")
    assert check_message(msg, CTX).reason == "machine-sender"


@pytest.mark.parametrize(
    "local",
    [
        "reply",
        "replies",
        "jane.doe",
        "bouncer",
        "bounced.cheques",
        "noreen",
        "postmasters",
        "nora.reply",
        "notify-me",
        "support",
        "info",
        "daemon",
    ],
)
def test_human_local_parts(local: str) -> None:
    msg = ParsedMessage(message_id="<m@x>", subject="s", from_addr=f"{local}@example.org")
    assert check_message(msg, CTX).automated is False


def test_noreply_reply_to_is_a_machine_too() -> None:
    text = CUSTOMER.replace("User-Agent:", "Reply-To: <noreply@shop.example>\n    User-Agent:")
    assert verdict_of(text).reason == "machine-sender"


def test_reply_to_own_address_would_loop() -> None:
    text = CUSTOMER.replace("User-Agent:", "Reply-To: <support+tr@example.com>\n    User-Agent:")
    assert verdict_of(text).reason == "own-address"


def test_no_parsable_from() -> None:
    text = CUSTOMER.replace(
        "From: =?utf-8?Q?Zeynep_=C3=87elik?= <zeynep@customer.com.tr>",
        "From: undisclosed-recipients:;",
    )
    assert verdict_of(text).reason == "no-sender"
    assert verdict_of(without(CUSTOMER, "From")).reason == "no-sender"


@pytest.mark.parametrize("header", [
    "From: Zeynep zeynep@customer.com.tr",  # '@' in an unquoted name, no <address>
    "From: zeynep at customer.com.tr",
])
def test_mangled_from_is_no_usable_sender(header: str) -> None:
    """Python's parser turns these into addresses with spaces; an SMTP server would
    refuse them (and aiosmtplib raises), so no auto-reply is even planned."""
    text = CUSTOMER.replace(
        "From: =?utf-8?Q?Zeynep_=C3=87elik?= <zeynep@customer.com.tr>", header)
    assert verdict_of(text).reason == "no-sender"


def test_mangled_reply_to_is_no_usable_sender() -> None:
    text = CUSTOMER.replace("User-Agent:", "Reply-To: Ops ops@customer.com.tr\n    User-Agent:")
    assert verdict_of(text).reason == "no-sender"


def test_unquoted_at_in_the_name_still_reaches_the_customer() -> None:
    """`Zeynep zeynep@x <zeynep@x>` (some CRMs write this) is read as the <address>."""
    text = CUSTOMER.replace(
        "From: =?utf-8?Q?Zeynep_=C3=87elik?= <zeynep@customer.com.tr>",
        "From: Zeynep zeynep@customer.com.tr <zeynep@customer.com.tr>")
    msg = parse_message(raw(text))
    assert msg.from_addr == "zeynep@customer.com.tr"
    assert check_message(msg, CTX).reason is None


@pytest.mark.parametrize("value", ["<>", "< >", "<MAILER-DAEMON>"])
def test_empty_return_path_header(value: str) -> None:
    text = CUSTOMER.replace("Return-Path: <zeynep@customer.com.tr>", f"Return-Path: {value}")
    assert verdict_of(text).reason == "empty-return-path"


def test_return_path_from_context_overrides_header() -> None:
    msg = parse_message(raw(CUSTOMER))
    null = GuardContext(own_addresses=CTX.own_addresses, return_path="")
    assert check_message(msg, null).reason == "empty-return-path"
    real = GuardContext(own_addresses=CTX.own_addresses, return_path="<zeynep@customer.com.tr>")
    text = CUSTOMER.replace("Return-Path: <zeynep@customer.com.tr>", "Return-Path: <>")
    assert check_message(parse_message(raw(text)), real).automated is False


def test_maild_own_auto_reply_headers_are_recognised() -> None:
    """What maild sends must be what maild refuses to answer (e.g. via a forward)."""
    extra = "".join(f"{k}: {v}\n    " for k, v in AUTO_HEADERS.items())
    text = CUSTOMER.replace("User-Agent:", f"{extra}User-Agent:")
    assert verdict_of(text).reason == "auto-submitted"
    assert AUTO_HEADERS["Auto-Submitted"] == "auto-replied"
    assert "Precedence" not in AUTO_HEADERS


def test_maild_auto_reply_from_own_address_is_machine_mail() -> None:
    """Machine markers come first: maild's own auto-reply coming back is an auto-reply
    (it must never count as an agent's reply), not just "our address"."""
    extra = "".join(f"{k}: {v}\n    " for k, v in AUTO_HEADERS.items())
    text = AGENT_FROM_OWN_ADDRESS.replace("Content-Type:", f"{extra}Content-Type:")
    assert verdict_of(text).reason == "auto-submitted"
    c = classify(parse_message(raw(text)), CTX)
    assert (c.sender, c.kind) == ("machine", "auto-reply")


def test_without_own_addresses_agent_mail_is_human() -> None:
    assert verdict_of(AGENT_FROM_OWN_ADDRESS, GuardContext()).automated is False


def test_marker_tables_are_well_formed() -> None:
    kinds = [kind for kind, _ in TABLES]
    assert kinds == ["bounce", "report", "auto-reply", "bulk", "notification"]
    names = {m.name for _, table in TABLES for m in table}
    assert names >= {"auto-submitted", "precedence", "list-headers", "empty-return-path",
                     "machine-sender", "report-content", "vendor-autoreply"}
    assert all(m.description for _, table in TABLES for m in table)
    # X-Auto-Response-Suppress is a request, never a machine marker
    assert not any("auto-response-suppress" in m.header.lower() for _, t in TABLES for m in t)


def test_no_sender_and_suppress_are_no_machine_mail() -> None:
    text = CUSTOMER.replace("User-Agent:", "X-Auto-Response-Suppress: All\n    User-Agent:")
    c = classify(parse_message(raw(text)), CTX)
    assert (c.sender, c.no_autoreply) == ("customer", "auto-response-suppress")
    c = classify(parse_message(raw(without(CUSTOMER, "From"))), CTX)
    assert (c.sender, c.no_autoreply) == ("customer", "no-sender")
