"""Teacher targets for training batches, read off posterior caches.

:class:`CachedTargets` is what :class:`asr_kd.data.dataset.UtteranceDataset` calls per utterance:
it returns the cached top-k log-posteriors, the teacher's confidence in its 1-best, and, where
``pseudo_labels`` asks for them (``unlabeled``: utterances without transcript; ``all``: sequence-level
KD), the teacher's greedy 1-best (best token per frame, repeats collapsed, blanks dropped) as the CTC
targets instead of the transcript: the student then learns from whatever the teacher heard.
:meth:`CachedTargets.decode_one_bests` replaces the greedy 1-best by a beam search's (the teacher's
posteriors with a word LM: noisy-student pseudo-labels, Park et al. 2020), decoded once up front.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from asr_kd.distill.cache import PosteriorCache
from asr_kd.models.ctc import collapse

__all__ = ["CachedTargets", "teacher_1best", "teacher_confidence", "topk_log_probs", "PSEUDO_LABELS"]

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


def topk_log_probs(values: np.ndarray, indices: np.ndarray, vocab_size: int) -> torch.Tensor:
    """``(T, V)`` log-posteriors from cached ``(T, K)`` top-k values and token ids: the mass outside
    the top k spread evenly over the other tokens (what a beam search over all tokens reads)."""
    full = np.empty((len(values), vocab_size), dtype=np.float32)
    rest = np.clip(1.0 - np.exp(values).sum(-1), 1e-10, None) / max(vocab_size - values.shape[1], 1)
    full[:] = np.log(rest)[:, None]
    np.put_along_axis(full, indices, values, axis=1)
    return torch.from_numpy(full)


class CachedTargets:
    """``targets(utt_id, audio_sha, labelled) -> {"teacher_values", "teacher_indices",
    "teacher_confidence"[, "tokens", "pseudo"]}`` from one or several caches (one per split; keys
    are content keys, unique across splits)."""

    def __init__(self, caches: Sequence[PosteriorCache], pseudo_labels: str = "none"):
        if pseudo_labels not in PSEUDO_LABELS:
            raise ValueError(f"pseudo_labels must be one of {PSEUDO_LABELS}, not {pseudo_labels!r}")
        self.caches, self.pseudo_labels = list(caches), pseudo_labels
        self.one_bests: dict[str, list[int]] = {}  # decoded 1-bests by key; the rest are greedy

    def _lookup(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        cache = next((c for c in self.caches if key in c), self.caches[0])  # the first one names a miss
        return cache[key]

    def _is_pseudo(self, labelled: bool) -> bool:
        return self.pseudo_labels == "all" or (self.pseudo_labels == "unlabeled" and not labelled)

    def __call__(self, utt_id: str, audio_sha: str, labelled: bool = True) -> dict[str, torch.Tensor]:
        key = PosteriorCache.key(utt_id, audio_sha)
        values, indices = self._lookup(key)
        item = {"teacher_values": torch.from_numpy(values), "teacher_indices": torch.from_numpy(indices),
                "teacher_confidence": teacher_confidence(values, indices)}
        if self._is_pseudo(labelled):
            one_best = self.one_bests[key] if key in self.one_bests else teacher_1best(values, indices)
            item["tokens"] = torch.tensor(one_best, dtype=torch.long)
            item["pseudo"] = True
        return item

    def decode_one_bests(
        self,
        utterances: Iterable[tuple[str, str, bool]],
        search: Callable[[torch.Tensor], str],
        encode: Callable[[str], list[int]],
        vocab_size: int,
    ) -> int:
        """Decode the pseudo-labelled ones of ``utterances`` (``(utt_id, audio_sha, labelled)``) with
        ``search`` on their cached posteriors, once, before loader workers fork; returns how many."""
        todo = [PosteriorCache.key(u, sha) for u, sha, labelled in utterances if self._is_pseudo(labelled)]
        for key in tqdm(todo, desc="pseudo-labels", dynamic_ncols=True, leave=False):
            self.one_bests[key] = encode(search(topk_log_probs(*self._lookup(key), vocab_size)))
        return len(todo)
