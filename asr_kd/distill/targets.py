"""Teacher targets for training batches, read off posterior caches.

:class:`CachedTargets` is what :class:`asr_kd.data.dataset.UtteranceDataset` calls per utterance:
it returns the cached top-k log-posteriors, the teacher's confidence in its 1-best, and, where
``pseudo_labels`` asks for them (``unlabeled``: utterances without transcript; ``all``: sequence-level
KD), the teacher's greedy 1-best (best token per frame, repeats collapsed, blanks dropped) as the CTC
targets instead of the transcript: the student then learns from whatever the teacher heard.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from asr_kd.distill.cache import PosteriorCache
from asr_kd.models.ctc import collapse

__all__ = ["CachedTargets", "teacher_1best", "teacher_confidence", "PSEUDO_LABELS"]

#: Which utterances get the teacher's 1-best as CTC targets.
PSEUDO_LABELS = ("none", "unlabeled", "all")


def teacher_1best(values: np.ndarray, indices: np.ndarray) -> list[int]:
    """The teacher's greedy CTC token ids from its cached ``(T, K)`` values and token ids."""
    best = indices[np.arange(len(values)), values.argmax(-1)]
    return collapse(best.tolist())


def teacher_confidence(values: np.ndarray, indices: np.ndarray) -> float:
    """The teacher's confidence in its 1-best: the mean best-token probability over the frames where
    that token is not blank (the spikes that make the 1-best); 0 for an utterance without any."""
    best = values.argmax(-1)
    spikes = indices[np.arange(len(values)), best] != 0
    if not spikes.any():
        return 0.0
    return float(np.exp(values[np.arange(len(values)), best][spikes]).mean())


class CachedTargets:
    """``targets(utt_id, audio_sha, labelled) -> {"teacher_values", "teacher_indices",
    "teacher_confidence"[, "tokens", "pseudo"]}`` from one or several caches (one per split; keys
    are content keys, unique across splits)."""

    def __init__(self, caches: Sequence[PosteriorCache], pseudo_labels: str = "none"):
        if pseudo_labels not in PSEUDO_LABELS:
            raise ValueError(f"pseudo_labels must be one of {PSEUDO_LABELS}, not {pseudo_labels!r}")
        self.caches, self.pseudo_labels = list(caches), pseudo_labels

    def __call__(self, utt_id: str, audio_sha: str, labelled: bool = True) -> dict[str, torch.Tensor]:
        key = PosteriorCache.key(utt_id, audio_sha)
        cache = next((c for c in self.caches if key in c), self.caches[0])  # the first one names a miss
        values, indices = cache[key]
        item = {"teacher_values": torch.from_numpy(values), "teacher_indices": torch.from_numpy(indices),
                "teacher_confidence": teacher_confidence(values, indices)}
        if self.pseudo_labels == "all" or (self.pseudo_labels == "unlabeled" and not labelled):
            item["tokens"] = torch.tensor(teacher_1best(values, indices), dtype=torch.long)
            item["pseudo"] = True
        return item
