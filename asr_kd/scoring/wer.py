"""WER and CER with jiwer, after :func:`asr_kd.scoring.text.normalize_text` on both sides."""

from __future__ import annotations

from collections.abc import Sequence

import jiwer

from asr_kd.errors import DataError
from asr_kd.scoring.text import normalize_text

__all__ = ["error_rates"]


def error_rates(refs: Sequence[str], hyps: Sequence[str]) -> dict[str, float]:
    """Corpus-level ``{"wer", "cer", "words"}``; empty hypotheses count as all-deletion."""
    refs = [normalize_text(r) for r in refs]
    hyps = [normalize_text(h) for h in hyps]
    if not refs or any(not r for r in refs):
        raise DataError("every reference must be non-empty after normalisation")
    words = jiwer.process_words(refs, hyps)
    chars = jiwer.process_characters(refs, hyps)
    return {"wer": words.wer, "cer": chars.cer, "words": sum(len(r.split()) for r in refs)}
