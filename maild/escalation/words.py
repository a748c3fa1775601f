"""The word lists of the "difficult conversation" signal, per language: plain data,
read by `maild.escalation.signals`, printed in docs/rules.md. Each entry is a regular
expression matched case-insensitively on word boundaries against the customer's
own words (quotes stripped). Add a language by adding a key; no code changes."""

from __future__ import annotations

ANGER: dict[str, tuple[str, ...]] = {
    "en": ("unacceptable", "ridiculous", "outrageous", "disgusting", "terrible", "awful",
           "worst", "furious", "angry", "fed up", "sick of", "pathetic", "useless",
           "incompetent", "joke", "scam", "shame on you", "still (?:not|no)", "again and again",
           "how many times"),
    "tr": ("rezalet", "kabul edilemez", "saçmalık", "berbat", "skandal", "yeter", "bıktım",
           "bıkkın", "sinir", "utanç", "dolandırıcı", "hala (?:yok|olmadı|gelmedi)",
           "hâlâ (?:yok|olmadı|gelmedi)", "kaçıncı kez", "defalarca", "beceriksiz"),
}
URGENCY: dict[str, tuple[str, ...]] = {
    "en": ("urgent", "urgently", "asap", "as soon as possible", "immediately", "emergency",
           "right now", "critical", "today"),
    "tr": ("acil", "acilen", "hemen", "derhal", "bugün", "kritik", "bir an önce"),
}
THREAT: dict[str, tuple[str, ...]] = {
    "en": ("cancel (?:my|the|our) (?:account|subscription|order|contract)", "refund now",
           "chargeback", "lawyer", "legal action", "sue", "court", "complain(?:t)? to",
           "report you", "consumer protection", "trustpilot", "bad review", "switch to",
           "never (?:buy|order) (?:again|from you)"),
    "tr": ("iptal", "aboneliğimi iptal", "avukat", "mahkeme", "dava", "şikayet edece",
           "şikâyet edece", "şikayetvar", "tüketici hakem", "tüketici hakları", "bddk",
           "btk", "rakip firma", "bir daha (?:almam|sipariş vermem)"),
}
KINDS: dict[str, dict[str, tuple[str, ...]]] = {"anger": ANGER, "urgency": URGENCY,
                                                "threat": THREAT}
# all-caps: a message with at least this many letters, this share of them capitals
CAPS_MIN_LETTERS = 20
CAPS_SHARE = 0.7
# repeated contacts: this many customer messages from the same address within a day
REPEATED_CONTACTS = 3
