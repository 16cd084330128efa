"""Character vocabulary for CTC: index 0 is the blank, then the characters seen in training."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = ["CharTokenizer", "BLANK"]

BLANK = "<blk>"


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
        lines = Path(path).read_text(encoding="utf-8").split("\n")
        return cls([line.replace("<space>", " ") for line in lines if line])

    def save(self, path: str | os.PathLike) -> None:
        from asr_kd.utils import atomic_path

        with atomic_path(path) as tmp:
            tmp.write_text("\n".join(t.replace(" ", "<space>") for t in self.tokens) + "\n")

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
