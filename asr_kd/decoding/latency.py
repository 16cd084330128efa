"""Emission latency: when a streaming recognizer emits each word, against when the word ends.

* Word end times come from a CTC forced alignment of the reference transcript
  (``torchaudio.functional.forced_align``) on a model's log-posteriors, normally the offline
  teacher's: a word ends where the frame of its last token ends.
* Word emission times come from the stream: the audio time fed when the token completing the word
  first appeared in the partial result (:func:`word_times`).
* :func:`emission_latencies` matches hypothesis words to reference words (identical words on the
  longest-matching alignment, :class:`difflib.SequenceMatcher`) and returns emission - end per
  matched word; wrong or missing words have no latency.
* :func:`symbol_delays_ms` is icefall's "symbol delay" of an offline CTC decode: per reference
  token, its emission time in the model's own forced alignment of the transcript minus its time in
  a reference model's (the teacher's) forced alignment. A token's anchor in either alignment is its
  first frame there, the onset of its CTC spike (:func:`token_frames`).
  :func:`delay_summary` gives their mean and p90, :func:`frame_offset` the teacher-to-student
  shift in frames that follows from them (what ``distill.shift_frames`` should be for this student
  at this chunk). :class:`SymbolDelays` measures a whole test set (stage
  decode: the teacher's alignments, then each student's delays against them).

Works for any tokenizer whose ``decode`` turns a token prefix into a text prefix (characters, BPE).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import numpy as np
import torch
import torchaudio.functional as AF

__all__ = ["word_times", "word_end_times", "emission_latencies", "encode", "token_frames", "symbol_delays_ms",
           "delay_summary", "frame_offset", "SymbolDelays"]


def word_times(
    tokenizer, token_ids: Sequence[int], token_times: Sequence[float]
) -> tuple[list[str], list[float]]:
    """Words of ``token_ids`` and, per word, the time of the token that completes it.

    ``token_times[k]`` is when token ``k`` was emitted (or where it ends). A token completes word
    ``w`` if it is the last token whose text prefix holds ``w + 1`` words and is not blank space.
    """
    words: list[str] = []
    times: list[float] = []
    for k in range(len(token_ids)):
        if not tokenizer.decode([token_ids[k]]).strip():
            continue  # a word separator completes nothing
        prefix = tokenizer.decode(token_ids[: k + 1]).split()
        if len(prefix) > len(words):
            words.append(prefix[-1])
            times.append(token_times[k])
        else:
            words[-1] = prefix[-1]
            times[-1] = token_times[k]
    return words, times


def word_end_times(
    log_probs: torch.Tensor, tokenizer, text: str, frame_s: float
) -> tuple[list[str], list[float]] | None:
    """Words of ``text`` and where each ends, by forced alignment on ``log_probs`` (T, V).

    ``frame_s``: seconds per frame of ``log_probs``. ``None`` if ``text`` cannot be aligned (more
    tokens than frames allow).
    """
    targets = encode(tokenizer, text)
    if targets is None:
        return None
    spans = _align(log_probs, targets)
    if spans is None:
        return None
    return word_times(tokenizer, targets, [span.end * frame_s for span in spans])


def encode(tokenizer, text: str) -> list[int] | None:
    """Token ids of ``text``, ``None`` if it holds a character the model cannot emit."""
    try:
        return tokenizer.encode(text)
    except KeyError:
        return None


def _align(log_probs: torch.Tensor, targets: Sequence[int]) -> list[AF.TokenSpan] | None:
    """One span per token of ``targets`` in the CTC forced alignment on ``log_probs`` (T, V) (logits or
    log-posteriors; blank 0), ``None`` if they cannot be aligned (more tokens than frames allow)."""
    if not targets:
        return []
    try:
        labels, scores = AF.forced_align(log_probs.detach().float().log_softmax(-1).unsqueeze(0).cpu(),
                                         torch.tensor([list(targets)], dtype=torch.int32), blank=0)
    except RuntimeError:
        return None
    spans = AF.merge_tokens(labels[0], scores[0].exp())
    return spans if len(spans) == len(targets) else None


def token_frames(log_probs: torch.Tensor, targets: Sequence[int]) -> list[int] | None:
    """First frame of each token of ``targets`` (its spike's onset) in the forced alignment on
    ``log_probs`` (T, V); ``None`` if they cannot be aligned."""
    spans = _align(log_probs, targets)
    return None if spans is None else [span.start for span in spans]


def symbol_delays_ms(
    log_probs: torch.Tensor, targets: Sequence[int], ref_frames: Sequence[int], frame_ms: float,
    ref_frame_ms: float | None = None,
) -> list[float] | None:
    """Per token, ms from its first frame in ``ref_frames`` (at ``ref_frame_ms``, default ``frame_ms``)
    to its first frame in this model's own forced alignment (``log_probs`` at ``frame_ms``)."""
    frames = token_frames(log_probs, targets)
    if frames is None or len(frames) != len(ref_frames):
        return None
    ref_ms = frame_ms if ref_frame_ms is None else ref_frame_ms
    return [f * frame_ms - r * ref_ms for f, r in zip(frames, ref_frames, strict=True)]


def delay_summary(delays_ms: Sequence[float]) -> dict[str, float | None]:
    """``{"mean", "p90"}`` of per-token delays pooled over a test set (``None`` when there are none)."""
    if not delays_ms:
        return {"mean": None, "p90": None}
    return {"mean": float(np.mean(delays_ms)), "p90": float(np.percentile(delays_ms, 90))}


def frame_offset(
    student_delays_ms: Sequence[float], teacher_delays_ms: Sequence[float], frame_ms: float
) -> int:
    """Frames to delay the teacher's targets by for this student: round((mean student delay - mean
    teacher delay) / ``frame_ms``)."""
    return round((float(np.mean(student_delays_ms)) - float(np.mean(teacher_delays_ms))) / frame_ms)


def emission_latencies(
    ref_words: Sequence[str], ref_ends: Sequence[float], hyp_words: Sequence[str], hyp_times: Sequence[float]
) -> list[float]:
    """Seconds from each reference word's end to the emission of the hypothesis word matched to it."""
    matcher = difflib.SequenceMatcher(a=list(ref_words), b=list(hyp_words), autojunk=False)
    out = []
    for block in matcher.get_matching_blocks():
        for n in range(block.size):
            out.append(hyp_times[block.b + n] - ref_ends[block.a + n])
    return out


class SymbolDelays:
    """A test set's forced alignments on one model (``reference`` ``None``: the teacher's, kept in
    :attr:`alignments`), or this model's symbol delays against a reference's such alignments."""

    def __init__(self, tokenizer, frame_ms: float, reference: dict | None = None):
        self.tokenizer, self.frame_ms, self.reference = tokenizer, frame_ms, reference
        self.alignments: dict[str, dict | None] = {}  # utterance -> {"tokens", "frames"} or None
        self.delays_ms: list[float] = []
        self.utterances = 0  # measured: aligned on both models, with the same tokens

    def fresh(self) -> SymbolDelays:
        """An empty collector with the same reference (another decode of the same test set)."""
        return SymbolDelays(self.tokenizer, self.frame_ms, self.reference)

    def add(self, utt_id: str, text: str, log_probs: torch.Tensor) -> None:
        """Align ``text`` on ``log_probs`` (T, V); skip it where it cannot be aligned on either model."""
        ids = encode(self.tokenizer, text)
        tokens = None if ids is None else [self.tokenizer.tokens[i] for i in ids]
        if self.reference is None:
            frames = None if ids is None else token_frames(log_probs, ids)
            self.alignments[utt_id] = None if frames is None else {"tokens": tokens, "frames": frames}
            return
        ref = self.reference["utterances"].get(utt_id)
        if ref is None or tokens != ref["tokens"]:  # a tokenizer unlike the reference's skips it too
            return
        delays = symbol_delays_ms(log_probs, ids, ref["frames"], self.frame_ms, self.reference["frame_ms"])
        if delays is not None:
            self.delays_ms += delays
            self.utterances += 1

    def to_json(self) -> dict:
        """The reference file: ``{"frame_ms", "utterances": {id: {"tokens", "frames"} | null}}``."""
        return {"frame_ms": self.frame_ms, "utterances": self.alignments}

    def summary(self) -> dict:
        """The decode summary's ``symbol_delay_ms`` (mean), ``symbol_delay_p90_ms``,
        ``symbol_delay_utts`` (utterances measured) and ``symbol_offset_frames`` (the teacher-to-this-
        model offset in this model's frames, :func:`frame_offset`; the teacher's delay to itself is 0)."""
        stats = delay_summary(self.delays_ms)
        offset = frame_offset(self.delays_ms, [0.0], self.frame_ms) if self.delays_ms else None
        return {"symbol_delay_ms": stats["mean"], "symbol_delay_p90_ms": stats["p90"],
                "symbol_delay_utts": self.utterances, "symbol_offset_frames": offset}
