"""WER and CER with jiwer, after :func:`asr_kd.scoring.text.normalize_text` on both sides."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import jiwer
import numpy as np

from asr_kd.errors import DataError
from asr_kd.scoring.text import normalize_text

__all__ = ["error_rates", "UtteranceErrors", "utterance_errors"]


def _normalized(refs: Sequence[str], hyps: Sequence[str]) -> tuple[list[str], list[str]]:
    refs = [normalize_text(r) for r in refs]
    hyps = [normalize_text(h) for h in hyps]
    if not refs or any(not r for r in refs):
        raise DataError("every reference must be non-empty after normalisation")
    if len(refs) != len(hyps):
        raise DataError(f"{len(refs)} references but {len(hyps)} hypotheses")
    return refs, hyps


def error_rates(refs: Sequence[str], hyps: Sequence[str]) -> dict[str, float]:
    """Corpus-level ``{"wer", "cer", "words"}``; empty hypotheses count as all-deletion."""
    refs, hyps = _normalized(refs, hyps)
    words = jiwer.process_words(refs, hyps)
    chars = jiwer.process_characters(refs, hyps)
    return {"wer": words.wer, "cer": chars.cer, "words": sum(len(r.split()) for r in refs)}


@dataclass(frozen=True)
class UtteranceErrors:
    """Word errors of each utterance of one decode: ``(N,)`` integer arrays, in decode order.

    ``alignment`` is jiwer's drawing of every utterance (REF/HYP lines with S/D/I marks), headed
    by the utterance id, followed by the corpus measures.
    """

    ids: list[str]
    sub: np.ndarray
    dele: np.ndarray
    ins: np.ndarray
    words: np.ndarray
    cer: float
    alignment: str

    @property
    def errors(self) -> np.ndarray:
        return self.sub + self.dele + self.ins

    @property
    def wer(self) -> float:
        return float(self.errors.sum() / self.words.sum())


_CHUNK_SIDE = {"substitute": 0, "delete": 1, "insert": 2}


def utterance_errors(ids: Sequence[str], refs: Sequence[str], hyps: Sequence[str]) -> UtteranceErrors:
    """Substitutions, deletions and insertions of each utterance (one jiwer alignment of the corpus)."""
    refs, hyps = _normalized(refs, hyps)
    output = jiwer.process_words(refs, hyps)
    counts = np.zeros((len(refs), 3), dtype=np.int64)  # (N, [S, D, I])
    for i, chunks in enumerate(output.alignments):
        for c in chunks:
            if c.type in _CHUNK_SIDE:
                if c.type == "insert":
                    counts[i, 2] += c.hyp_end_idx - c.hyp_start_idx
                else:
                    counts[i, _CHUNK_SIDE[c.type]] += c.ref_end_idx - c.ref_start_idx
    drawing = jiwer.visualize_alignment(output, show_measures=True, skip_correct=False)
    drawing = re.sub(r"=== SENTENCE (\d+) ===", lambda m: f"=== {ids[int(m.group(1)) - 1]} ===", drawing)
    return UtteranceErrors(
        ids=list(ids), sub=counts[:, 0], dele=counts[:, 1], ins=counts[:, 2],
        words=np.array([len(r.split()) for r in refs]), cer=jiwer.process_characters(refs, hyps).cer,
        alignment=drawing,
    )
