"""Language detection: Turkish vs English customer mail, short and quoted text."""

from __future__ import annotations

import pytest

from maild.language import detect_language, own_words


@pytest.mark.parametrize(
    "text",
    [
        "Merhaba, siparişim hâlâ gelmedi, yardımcı olur musunuz?",
        "Merhaba, şifremi unuttum, giriş yapamıyorum.",
        "İade talebim ne durumda? Teşekkürler",
        "Geçen ayki faturamda iki kez ücret alınmış. Kontrol edebilir misiniz?",
    ],
)
def test_turkish(text: str) -> None:
    assert detect_language(text, "en") == "tr"


@pytest.mark.parametrize(
    "text",
    [
        "Hello, my order still hasn't arrived, can you help?",
        "Hi, I forgot my password and cannot log in.",
        "I was charged twice on last month's invoice, could you check it please?",
    ],
)
def test_english(text: str) -> None:
    assert detect_language(text, "tr") == "en"


def test_other_languages_give_iso_639_1() -> None:
    assert detect_language("Bonjour, ma commande n'est toujours pas arrivée, merci.", "en") == "fr"
    assert detect_language("Hallo, meine Bestellung ist noch nicht angekommen.", "en") == "de"


@pytest.mark.parametrize(
    "text", ["", "   ", "Teşekkürler!", "Siparişim nerede?", "ok thx", "12345"]
)
def test_short_text_gives_default(text: str) -> None:
    assert detect_language(text, "xx") == "xx"


def test_quoted_text_is_ignored() -> None:
    reply = (
        "Thanks, that solved it!\n\n"
        "On Mon, 3 Jun 2024 at 10:00, Destek <destek@example.com> wrote:\n"
        "> Merhaba, talebiniz alınmıştır, en kısa sürede size dönüş yapacağız.\n"
        "> Teşekkürler, iyi çalışmalar dileriz.\n"
    )
    # Only "Thanks, that solved it" is the customer's own: too short to tell.
    assert detect_language(reply, "xx") == "xx"
    turkish = (
        "Teşekkürler, sorun çözüldü, iyi çalışmalar.\n\n"
        "> Hello, we have received your request and will answer within four business hours.\n"
        "> Kind regards, the support team\n"
    )
    assert detect_language(turkish, "en") == "tr"


def test_signature_and_original_message_are_ignored() -> None:
    text = (
        "Merhaba, kargom hâlâ teslim edilmedi, lütfen kontrol eder misiniz?\n"
        "-- \nJohn Smith, Head of Customer Success, please consider the environment\n"
    )
    assert "John" not in own_words(text)
    outlook = (
        "Merhaba, kargom hâlâ teslim edilmedi, lütfen kontrol eder misiniz?\n"
        "-----Original Message-----\nFrom: support\nWe will get back to you shortly, thanks.\n"
    )
    assert "shortly" not in own_words(outlook)
    assert detect_language(outlook, "en") == "tr"


def test_deterministic() -> None:
    text = "Merhaba, siparişim hâlâ gelmedi, yardımcı olur musunuz?"
    assert {detect_language(text, "en") for _ in range(20)} == {"tr"}


def test_never_raises_on_odd_input() -> None:
    assert detect_language("😀" * 50, "en") == "en"
    assert detect_language("https://example.com/a/b/c/d/e/f/g/h user@example.com", "en") == "en"
    assert detect_language("\x00" * 100 + "abc", "tr") == "tr"
