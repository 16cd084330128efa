"""Emission latency: when a streaming recognizer emits each word, against when the word ends.

* Word end times come from a CTC forced alignment of the reference transcript
  (``torchaudio.functional.forced_align``) on a model's log-posteriors, normally the offline
  teacher's: a word ends where the frame of its last token ends.
* Word emission times come from the stream: the audio time fed when the token completing the word
  first appeared in the partial result (:func:`word_times`).
* :func:`emission_latencies` matches hypothesis words to reference words (identical words on the
  longest-matching alignment, :class:`difflib.SequenceMatcher`) and returns emission - end per
  matched word; wrong or missing words have no latency.

Works for any tokenizer whose ``decode`` turns a token prefix into a text prefix (characters, BPE).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import torch
import torchaudio.functional as AF

__all__ = ["word_times", "word_end_times", "emission_latencies"]


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
    try:
        targets = tokenizer.encode(text)
    except KeyError:  # a character the model cannot emit
        return None
    if not targets:
        return [], []
    try:
        labels, scores = AF.forced_align(log_probs.float().log_softmax(-1).unsqueeze(0),
                                         torch.tensor([targets], dtype=torch.int32), blank=0)
    except RuntimeError:
        return None
    spans = AF.merge_tokens(labels[0], scores[0].exp())
    if len(spans) != len(targets):
        return None
    return word_times(tokenizer, targets, [span.end * frame_s for span in spans])


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
