"""The one text normalisation (asr_kd/scoring/text.py): numbers and word symbols spelled out as
LJSpeech's normalised column does, text without them unchanged, the scorer using the same rule."""

from __future__ import annotations

import pytest

from asr_kd.scoring.text import ALLOWED_CHARS, cardinal, normalize_text, spelled_characters
from asr_kd.scoring.wer import error_rates

SPELLED = {
    "call 911 in 2024": "call nine hundred eleven in twenty twenty four",
    "In 1455 they": "in fourteen fifty five they",  # LJSpeech's own example
    "1905, 1900, 1066": "nineteen oh five nineteen hundred ten sixty six",
    "2000, 2007, 2010": "two thousand two thousand seven twenty ten",
    "1000 or 3000 men": "one thousand or three thousand men",  # outside 1001-2999: cardinals
    "the 21st, 3rd, 12th, 40th and 100th": "the twenty first third twelfth fortieth and one hundredth",
    "1ST": "first",
    "the 1990s and 80's": "the nineteen nineties and eighties",
    "50% & 3+4": "fifty percent and three plus four",
    "$5, $1.50, $0.05 and £3": "five dollars one dollar fifty cents five cents and three pounds",
    "a $ sign": "a dollars sign",
    "pi is 3.14": "pi is three point one four",
    "1,000,000 people": "one million people",
    "agent 007": "agent zero zero seven",
    "COVID-19 at 10:30": "covid nineteen at ten thirty",
    "x²": "x two",  # NFKD first
    "12345": "twelve thousand three hundred forty five",
}


@pytest.mark.parametrize("raw", list(SPELLED))
def test_numbers_and_word_symbols_are_spelled_out(raw):
    assert normalize_text(raw) == SPELLED[raw]
    assert normalize_text(SPELLED[raw]) == SPELLED[raw]  # idempotent
    assert set(SPELLED[raw]) <= ALLOWED_CHARS and not set("0123456789") & ALLOWED_CHARS


def test_cardinals():
    cases = {0: "zero", 13: "thirteen", 40: "forty", 101: "one hundred one", 911: "nine hundred eleven",
             1_000_000: "one million", 2_000_017: "two million seventeen",
             999_999: "nine hundred ninety nine thousand nine hundred ninety nine"}  # fmt: skip
    assert {n: cardinal(n) for n in cases} == cases


def test_text_that_spells_its_numbers_is_unchanged():
    for text in ("fourteen fifty five", "don't stop now", "set an alarm for seven thirty", "four two seven"):
        assert normalize_text(text) == text and spelled_characters(text) == []
    assert normalize_text("Don't  STOP-now!") == "don't stop now"
    assert normalize_text("Café, naïve") == "cafe naive"


def test_spelled_characters_lists_digits_and_word_symbols():
    assert spelled_characters("call 911 & 50% + $3") == ["$", "%", "&", "+", "0", "1", "3", "5", "9"]
    assert spelled_characters("x²") == ["2"]
    assert spelled_characters("no numbers here, - ! ?") == []


def test_scoring_normalises_references_and_hypotheses_with_the_same_rule():
    rates = error_rates(["Call 911 in 2024!"], ["call nine hundred eleven in twenty twenty four"])
    assert rates["wer"] == 0.0 and rates["words"] == 8
    assert error_rates(["rock & roll"], ["rock and roll"])["wer"] == 0.0
