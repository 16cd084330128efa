"""Byte-pair-encoding vocabulary for CTC: pieces learned by sentencepiece, used without it.

The vocabulary is a list of pieces as :class:`~asr_kd.data.tokenizer.CharTokenizer` keeps one:
index 0 the CTC blank, 1 ``<unk>``, then the merged pieces in the order sentencepiece learned them,
then the single characters. ``▁`` (U+2581) marks the start of a word, as in sentencepiece. The
list alone is the whole tokenizer (``tokens.txt``, and the ``tokens`` of a checkpoint bundle):
encoding replays the merges, lowest index first, which is how sentencepiece encodes with a BPE model
(a test checks the two agree). So ``sentencepiece`` is needed only to learn a vocabulary.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence

from asr_kd.data.tokenizer import BLANK, WORD_START, CharTokenizer

__all__ = ["BpeTokenizer", "UNK"]

UNK = "<unk>"


class BpeTokenizer(CharTokenizer):
    """Maps normalised text to BPE piece ids and back (same interface as ``CharTokenizer``)."""

    def __init__(self, tokens: Sequence[str]):
        super().__init__(tokens)
        if len(self.tokens) < 2 or self.tokens[1] != UNK:
            raise ValueError(f"a BPE vocabulary has {BLANK!r} then {UNK!r} first, got {self.tokens[:2]}")
        self._words: dict[str, list[int]] = {}

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 500) -> BpeTokenizer:
        """Learn up to ``vocab_size`` pieces (fewer where the texts hold fewer) from normalised transcripts.

        Deterministic: the same texts give the same vocabulary.
        """
        import sentencepiece as spm

        model = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(list(texts)),
            model_writer=model,
            model_type="bpe",
            vocab_size=vocab_size,
            hard_vocab_limit=False,
            character_coverage=1.0,
            normalization_rule_name="identity",  # texts are normalised already (asr_kd.scoring.text)
            pad_id=0,
            pad_piece=BLANK,
            unk_id=1,
            unk_piece=UNK,
            bos_id=-1,
            eos_id=-1,
            num_threads=1,
            minloglevel=2,
        )
        sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
        return cls([sp.id_to_piece(i) for i in range(sp.get_piece_size())])

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> BpeTokenizer:
        return cls.train(texts)

    def encode(self, text: str) -> list[int]:
        """Piece ids of ``text``; a character outside the vocabulary raises ``KeyError`` naming it."""
        ids = []
        for word in text.split():
            if word not in self._words:
                self._words[word] = self._encode_word(WORD_START + word, text)
            ids += self._words[word]
        return ids

    def _encode_word(self, word: str, text: str) -> list[int]:
        """Merge neighbouring pieces, the pair whose merged piece has the lowest index first."""
        unknown = sorted({c for c in word if c not in self._ids})
        if unknown:
            raise KeyError(f"character {unknown[0]!r} of {text!r} is not in the vocabulary")
        pieces = list(word)
        while len(pieces) > 1:
            ranks = [self._ids.get(a + b, len(self.tokens)) for a, b in zip(pieces, pieces[1:], strict=False)]
            best = min(range(len(ranks)), key=ranks.__getitem__)
            if ranks[best] == len(self.tokens):
                break
            pieces[best : best + 2] = [pieces[best] + pieces[best + 1]]
        return [self._ids[p] for p in pieces]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of the pieces (blank and ``<unk>`` left out; no CTC collapsing here)."""
        return "".join(self.tokens[i] for i in ids if i > 1).replace(WORD_START, " ").strip()
