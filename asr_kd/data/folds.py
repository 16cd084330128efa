"""Cross-fitting folds: train split into ``k`` disjoint folds, by speaker where the corpus has them.

Fold teacher ``i`` trains on every clip outside fold ``i``, so each train clip has one teacher that
never heard it (asr_kd.stages.cache). Views of a clip (``<id>_sp0.9``, ``<id>_nz1``) belong to its
fold: a teacher that trained on a speed-perturbed copy has as good as heard the clip.

Speakers, when every clip has one and there are at least ``k``, are dealt to folds greedily by
duration (longest first, each to the fold with the least audio so far; ties by name), so the
folds hold about the same audio and each speaker is in one fold. Otherwise each clip goes to a
fold by a hash of its id. Both are deterministic.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict

from asr_kd.data.manifest import Utterance
from asr_kd.data.views import source_id
from asr_kd.errors import DataError

__all__ = ["assign_folds", "fold_of"]


def assign_folds(utts: list[Utterance], k: int) -> dict:
    """``{"folds": k, "by": "speaker"|"utterance", "fold_of": {clip id: fold 1..k}, "hours": [...]}``
    for the clips of ``utts`` (views follow their clip: :func:`fold_of`)."""
    clips = {u.id: u for u in utts if source_id(u.id) == u.id}
    if len(clips) < k:
        raise DataError(f"{len(clips)} train clip(s) cannot make {k} cross-fitting folds; lower cache.folds")
    speakers = {u.speaker for u in clips.values()}
    by_speaker = None not in speakers and len(speakers) >= k
    if by_speaker:
        audio: dict[str, float] = defaultdict(float)
        for u in clips.values():
            audio[u.speaker] += u.duration
        load = [0.0] * k
        fold_of_speaker = {}
        for speaker in sorted(audio, key=lambda s: (-audio[s], s)):
            fold = min(range(k), key=lambda f: (load[f], f))
            fold_of_speaker[speaker] = fold + 1
            load[fold] += audio[speaker]
        folds = {i: fold_of_speaker[u.speaker] for i, u in clips.items()}
    else:
        folds = {i: 1 + int(hashlib.sha256(i.encode()).hexdigest()[:8], 16) % k for i in clips}
    hours = [sum(clips[i].duration for i, f in folds.items() if f == fold) / 3600 for fold in range(1, k + 1)]
    if 0 in hours:
        raise DataError(f"cross-fitting: fold {hours.index(0) + 1} of {k} is empty; lower cache.folds")
    return {"folds": k, "by": "speaker" if by_speaker else "utterance",
            "fold_of": dict(sorted(folds.items())), "hours": hours}


def fold_of(folds: dict, utt_id: str) -> int | None:
    """The fold (1..k) of utterance or view ``utt_id`` in ``folds`` (:func:`assign_folds`); None for
    a clip of no fold (another split, or audio the fold teachers never saw)."""
    return folds["fold_of"].get(source_id(utt_id))
