"""The one text normalisation used for training targets *and* WER references.

Sharing it is what keeps the two from disagreeing: a transcript is normalised once when the
manifest is written, the tokenizer only ever sees normalised text, and scoring normalises
hypotheses and references with the same function.

Rules: Unicode NFKD with accents dropped ("café" -> "cafe"); lower case; apostrophes kept inside
words ("don't"); every other character outside ``[a-z0-9' ]`` (punctuation, hyphens, symbols)
becomes a space; runs of spaces collapse; leading/trailing spaces are stripped. Digits are kept
as digits (corpora that spell numbers keep spelling them).
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["normalize_text", "ALLOWED_CHARS"]

#: Every character a normalised transcript can contain.
ALLOWED_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789' ")

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'"})
_DISALLOWED = re.compile(r"[^a-z0-9' ]+")
_STRAY_APOSTROPHE = re.compile(r"(?<![a-z0-9])'|'(?![a-z0-9])")
_SPACES = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Normalise a transcript (see module docstring). ``"Don't  STOP-now!"`` -> ``"don't stop now"``."""
    text = unicodedata.normalize("NFKD", text).translate(_APOSTROPHES).lower()
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = _DISALLOWED.sub(" ", text)
    text = _STRAY_APOSTROPHE.sub(" ", text)
    return _SPACES.sub(" ", text).strip()
