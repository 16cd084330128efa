"""Teacher targets for training batches, read off posterior caches.

:class:`CachedTargets` is what :class:`asr_kd.data.dataset.UtteranceDataset` calls per utterance:
it returns the cached top-k log-posteriors and, for sequence-level KD (``pseudo_labels``), the
teacher's greedy 1-best (best token per frame, repeats collapsed, blanks dropped) as the CTC
targets instead of the transcript: the student then learns from whatever the teacher heard.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from asr_kd.distill.cache import PosteriorCache
from asr_kd.models.ctc import collapse

__all__ = ["CachedTargets", "teacher_1best"]


def teacher_1best(values: np.ndarray, indices: np.ndarray) -> list[int]:
    """The teacher's greedy CTC token ids from its cached ``(T, K)`` values and token ids."""
    best = indices[np.arange(len(values)), values.argmax(-1)]
    return collapse(best.tolist())


class CachedTargets:
    """``targets(utt_id, audio_sha) -> {"teacher_values", "teacher_indices"[, "tokens"]}`` from one or
    several caches (one per split; keys are content keys, unique across splits)."""

    def __init__(self, caches: Sequence[PosteriorCache], pseudo_labels: bool = False):
        self.caches, self.pseudo_labels = list(caches), pseudo_labels

    def __call__(self, utt_id: str, audio_sha: str) -> dict[str, torch.Tensor]:
        key = PosteriorCache.key(utt_id, audio_sha)
        cache = next((c for c in self.caches if key in c), self.caches[0])  # the first one names a miss
        values, indices = cache[key]
        item = {"teacher_values": torch.from_numpy(values), "teacher_indices": torch.from_numpy(indices)}
        if self.pseudo_labels:
            item["tokens"] = torch.tensor(teacher_1best(values, indices), dtype=torch.long)
        return item
