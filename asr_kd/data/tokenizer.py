"""Character vocabulary for CTC: index 0 is the blank, then the characters seen in training.

A vocabulary travels as its list of tokens (``data/tokens.txt``, a checkpoint's ``tokens``):
:func:`asr_kd.data.vocabulary.tokenizer_from_tokens` and ``load_tokenizer`` give back the
tokenizer it belongs to, this one or :class:`asr_kd.data.bpe.BpeTokenizer` (whose pieces hold the
word-start mark ``▁``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

__all__ = ["Tokenizer", "CharTokenizer", "BLANK", "WORD_START", "read_tokens"]

BLANK = "<blk>"
#: sentencepiece's word-start mark; normalised text never holds it, so it tells BPE pieces apart.
WORD_START = "\u2581"


class Tokenizer(Protocol):
    """What every vocabulary gives (:class:`CharTokenizer`, :class:`asr_kd.data.bpe.BpeTokenizer`, a
    pretrained teacher's labels): ``tokens`` (index 0 the blank), text <-> ids, and ``tokens.txt``."""

    tokens: list[str]

    def __len__(self) -> int: ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Iterable[int]) -> str: ...

    def save(self, path: str | os.PathLike) -> None: ...


class CharTokenizer:
    """Maps normalised text to token ids and back; ``" "`` is a token like any letter."""

    def __init__(self, tokens: Sequence[str]):
        if not tokens or tokens[0] != BLANK:
            raise ValueError(f"the first token must be the CTC blank {BLANK!r}")
        self.tokens = list(tokens)
        self._ids = {t: i for i, t in enumerate(self.tokens)}

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> CharTokenizer:
        """Build the vocabulary from (normalised) training transcripts."""
        return cls([BLANK, *sorted(set("".join(texts)))])

    @classmethod
    def load(cls, path: str | os.PathLike) -> CharTokenizer:
        return cls(read_tokens(path))

    def save(self, path: str | os.PathLike) -> None:
        from asr_kd.utils import atomic_path

        with atomic_path(path) as tmp:
            tmp.write_text("\n".join(t.replace(" ", "<space>") for t in self.tokens) + "\n", encoding="utf-8")

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; a character outside the vocabulary raises ``KeyError`` naming it."""
        try:
            return [self._ids[c] for c in text]
        except KeyError as e:
            raise KeyError(f"character {e.args[0]!r} of {text!r} is not in the vocabulary") from None

    def decode(self, ids: Iterable[int]) -> str:
        """Text of non-blank ids (no CTC collapsing here: see asr_kd.decoding)."""
        return "".join(self.tokens[i] for i in ids if i != 0)


def read_tokens(path: str | os.PathLike) -> list[str]:
    lines = Path(path).read_text(encoding="utf-8").split("\n")
    return [line.replace("<space>", " ") for line in lines if line]
