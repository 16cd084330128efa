"""The CTC output convention every model shares: blank is id 0; the best path is the argmax per frame
with repeats collapsed and blanks removed (greedy decoding, dev WER, pseudo-labels)."""

from __future__ import annotations

import torch

__all__ = ["ctc_greedy", "collapse"]


def collapse(ids: list[int], previous: int = 0) -> list[int]:
    """Collapse repeats and drop blanks; ``previous`` is the last frame's id (for streaming)."""
    out = []
    for i in ids:
        if i != previous and i != 0:
            out.append(i)
        previous = i
    return out


def ctc_greedy(logits: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
    """Token ids per utterance from ``logits`` (B, T, V) and ``lengths`` (B,)."""
    best = logits.argmax(-1).tolist()
    return [collapse(row[:n]) for row, n in zip(best, lengths.tolist(), strict=True)]
