"""Which tokenizer a saved vocabulary belongs to: characters, or BPE pieces (they hold ``▁``).

Kept apart from both tokenizer modules so that neither imports the other.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from asr_kd.data.bpe import BpeTokenizer
from asr_kd.data.tokenizer import WORD_START, CharTokenizer, Tokenizer, read_tokens

__all__ = ["tokenizer_from_tokens", "load_tokenizer"]


def tokenizer_from_tokens(tokens: Sequence[str]) -> Tokenizer:
    """The tokenizer of a vocabulary: BPE when a token holds ``▁``, characters otherwise."""
    return BpeTokenizer(tokens) if any(WORD_START in t for t in tokens) else CharTokenizer(tokens)


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """The tokenizer saved at ``path`` (``data/tokens.txt``), whichever kind it is."""
    return tokenizer_from_tokens(read_tokens(path))
