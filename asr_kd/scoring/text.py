"""The one text normalisation used for training targets *and* WER references.

Sharing it is what keeps the two from disagreeing: a transcript is normalised once when the
manifest is written, the tokenizer only ever sees normalised text, and scoring normalises
hypotheses and references with the same function.

Rules, in order:

1. Unicode NFKD with accents dropped ("café" -> "cafe"; "²" -> "2").
2. Numbers and the symbols that are read as words are spelled out, as LJSpeech's normalised
   column does (the rule of keithito/tacotron's ``cleaners``, written out here; decimals are read
   digit by digit after the point):

   - ``,`` between digit groups is dropped ("1,000" -> 1000);
   - money: "$5" -> "five dollars", "$1.50" -> "one dollar fifty cents", "$0.05" -> "five cents",
     "£3" -> "three pounds";
   - decimals: "3.14" -> "three point one four";
   - ordinals: "21st" -> "twenty first", "3rd" -> "third";
   - plurals of numbers: "1990s" -> "nineteen nineties";
   - integers read as years from 1001 to 2999: "1455" -> "fourteen fifty five", "1905" -> "nineteen
     oh five", "1900" -> "nineteen hundred", "2000" -> "two thousand", "2007" -> "two thousand seven",
     "2024" -> "twenty twenty four"; other integers as cardinals without "and": "911" -> "nine
     hundred eleven", "12345" -> "twelve thousand three hundred forty five"; a number written with
     a leading zero is read digit by digit ("007" -> "zero zero seven"), as is one of 16 digits or
     more;
   - symbols: "%" -> "percent", "&" -> "and", "+" -> "plus", a lone "$" -> "dollars", "£" -> "pounds";
   - not read as such: signs ("-5" -> "five"), fractions ("1/2" -> "one two"), times (two numbers:
     "10:30" -> "ten thirty", "10:05" -> "ten zero five"): spell these in the corpus, or reject them.

   Text that holds none of these (every corpus that already spells its numbers) is unchanged by
   this step. :func:`spelled_characters` lists what it would rewrite, for corpora that prefer to
   reject such transcripts (``data.numbers=reject``).
3. Lower case; apostrophes kept inside words ("don't"); every other character outside
   ``[a-z' ]`` (punctuation, hyphens, other symbols, digits of other scripts) becomes a space; runs
   of spaces collapse; leading/trailing spaces are stripped.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["normalize_text", "spell_numbers", "spelled_characters", "cardinal", "ALLOWED_CHARS"]

#: Every character a normalised transcript can contain.
ALLOWED_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz' ")
#: Symbols read as words (rule 2); digits are the ASCII ones, NFKD maps others ("²", "①") onto them.
WORD_SYMBOLS = {"%": "percent", "&": "and", "+": "plus", "$": "dollars", "£": "pounds"}

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'"})
_DISALLOWED = re.compile(r"[^a-z' ]+")
_STRAY_APOSTROPHE = re.compile(r"(?<![a-z])'|'(?![a-z])")
_SPACES = re.compile(r"\s+")

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_ORDINAL = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
            "nine": "ninth", "twelve": "twelfth"}  # fmt: skip

_GROUPED = re.compile(r"(?<=[0-9]),(?=[0-9]{3}(?![0-9]))")
_MONEY = re.compile(r"([$£])\s?([0-9]+)(?:\.([0-9]{1,2}))?(?![0-9])")
_DECIMAL = re.compile(r"([0-9]+)\.([0-9]+)")
_ORDINAL_NUMBER = re.compile(r"([0-9]+)(st|nd|rd|th)\b", re.IGNORECASE)
_PLURAL_NUMBER = re.compile(r"([0-9]+)'?s\b")
_INTEGER = re.compile(r"[0-9]+")
_SPELLED = re.compile("[0-9" + re.escape("".join(WORD_SYMBOLS)) + "]")


def cardinal(n: int) -> str:
    """``n >= 0`` as words without "and": 911 -> "nine hundred eleven"."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        return _ONES[n // 100] + " hundred" + ("" if n % 100 == 0 else " " + cardinal(n % 100))
    for size, name in _SCALES:
        if n >= size:
            rest = n % size
            return cardinal(n // size) + " " + name + ("" if rest == 0 else " " + cardinal(rest))
    raise AssertionError("unreachable")


def _ordinal(n: int) -> str:
    """21 -> "twenty first", 40 -> "fortieth", 100 -> "one hundredth"."""
    *head, last = cardinal(n).split()
    last = _ORDINAL.get(last) or (last[:-1] + "ieth" if last.endswith("y") else last + "th")
    return " ".join([*head, last])


def _plural(words: str) -> str:
    """Plural of spelled number words: "nineteen ninety" -> "nineteen nineties", "six" -> "sixes"."""
    if words.endswith("y"):
        return words[:-1] + "ies"
    return words + ("es" if words.endswith("x") else "s")


def _year_or_cardinal(n: int) -> str:
    """The LJSpeech reading of an integer: years 1001-2999 in pairs ("fourteen fifty five")."""
    if not 1000 < n < 3000 or n == 2000 or 2000 < n < 2010:
        return cardinal(n)
    if n % 100 == 0:
        return cardinal(n // 100) + " hundred"
    high, low = divmod(n, 100)
    return cardinal(high) + " " + (cardinal(low) if low >= 10 else "oh " + _ONES[low])


def _digit_by_digit(digits: str) -> str:
    """Each digit as a word: "007" -> "zero zero seven"."""
    return " ".join(_ONES[int(d)] for d in digits)


def _integer(digits: str) -> str:
    """A digit string as words: a leading zero, or 16 digits or more, is read digit by digit."""
    if (digits.startswith("0") and len(digits) > 1) or len(digits) >= 16:
        return _digit_by_digit(digits)
    return _year_or_cardinal(int(digits))


def _money(m: re.Match) -> str:
    unit, (one, many) = m[1], (("dollar", "dollars") if m[1] == "$" else ("pound", "pounds"))
    whole, cents = int(m[2]), int(m[3].ljust(2, "0")) if m[3] else 0
    words = f" {cardinal(whole)} {one if whole == 1 else many} " if whole or not cents else " "
    if cents:
        small = ("cent", "cents") if unit == "$" else ("penny", "pence")
        words += f"{cardinal(cents)} {small[cents != 1]} "
    return words


def spell_numbers(text: str) -> str:
    """Rule 2 of the module docstring: numbers and word symbols of ``text`` spelled out in words."""
    if not _SPELLED.search(text):
        return text
    text = _GROUPED.sub("", text)
    text = _MONEY.sub(_money, text)
    text = _DECIMAL.sub(lambda m: f" {cardinal(int(m[1]))} point {_digit_by_digit(m[2])} ", text)
    text = _ORDINAL_NUMBER.sub(lambda m: f" {_ordinal(int(m[1]))} ", text)
    text = _PLURAL_NUMBER.sub(lambda m: f" {_plural(_integer(m[1]))} ", text)
    text = _INTEGER.sub(lambda m: f" {_integer(m[0])} ", text)
    return "".join(f" {WORD_SYMBOLS[c]} " if c in WORD_SYMBOLS else c for c in text)


def spelled_characters(text: str) -> list[str]:
    """The digits and word symbols of ``text`` (after NFKD) that :func:`spell_numbers` would rewrite."""
    return sorted(set(_SPELLED.findall(unicodedata.normalize("NFKD", text))))


def normalize_text(text: str) -> str:
    """Normalise a transcript (module docstring): ``"STOP, 2 & 3!"`` -> ``"stop two and three"``."""
    text = unicodedata.normalize("NFKD", text).translate(_APOSTROPHES)
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = spell_numbers(text).lower()
    text = _DISALLOWED.sub(" ", text)
    text = _STRAY_APOSTROPHE.sub(" ", text)
    return _SPACES.sub(" ", text).strip()
