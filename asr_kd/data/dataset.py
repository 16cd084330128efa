"""Training/eval batches from the feature store (and, for distillation, the posterior cache)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields, replace

import torch
from torch.utils.data import Dataset, Sampler

from asr_kd.data.manifest import Utterance
from asr_kd.data.tokenizer import Tokenizer
from asr_kd.errors import ConfigError
from asr_kd.features.cmvn import GlobalCMVN
from asr_kd.features.store import FeatureStore, StoreUnion

__all__ = ["Batch", "UtteranceDataset", "DurationBatchSampler", "collate", "parse_split"]


def parse_split(spec: str) -> tuple[str, int | None]:
    """``"unlabeled:1200"`` -> ``("unlabeled", 1200)``: a split, or its first N utterances (in
    manifest order); ``"train"`` -> ``("train", None)``. A study varies how much of a split a system
    trains on (e.g. hours of untranscribed audio) without preparing the corpus again."""
    name, sep, count = str(spec).partition(":")
    if not sep:
        return name, None
    if not count.isdigit() or int(count) == 0:
        raise ConfigError(f"split {spec!r}: write <split> or <split>:<number of utterances>, "
                          "e.g. unlabeled:1200")
    return name, int(count)


@dataclass
class Batch:
    """A padded batch. ``teacher_*`` are present only when distilling (K = cache top-k).

    ``labelled[b]`` is False for untranscribed audio: its ``targets`` are empty (length 0) unless
    the teacher's 1-best stands in for them (``pseudo[b]``, asr_kd.distill.targets, with the
    teacher's confidence in it); objectives mask the CTC term accordingly.
    """

    ids: list[str]
    feats: torch.Tensor  # (B, T, F), CMVN applied, zero-padded
    lengths: torch.Tensor  # (B,)
    targets: torch.Tensor  # (B, U) token ids, zero-padded
    target_lengths: torch.Tensor  # (B,)
    labelled: torch.Tensor  # (B,) bool: the utterance has a transcript
    pseudo: torch.Tensor  # (B,) bool: its targets are the teacher's 1-best, not the transcript
    teacher_confidence: torch.Tensor | None = None  # (B,) the teacher's confidence in its 1-best
    teacher_values: torch.Tensor | None = None  # (B, T', K) teacher log-posteriors
    teacher_indices: torch.Tensor | None = None  # (B, T', K) their token ids
    teacher_lengths: torch.Tensor | None = None  # (B,)

    def to(self, device: torch.device) -> Batch:
        """A copy with every tensor on ``device`` (asynchronous from pinned memory)."""
        moved = {
            f.name: value.to(device, non_blocking=True)
            for f in fields(self)
            if isinstance(value := getattr(self, f.name), torch.Tensor)
        }
        return replace(self, **moved)


class UtteranceDataset(Dataset):
    """Item ``i``: normalised features, token ids and (optionally) teacher targets.

    ``teacher`` maps ``(utt_id, audio_sha, labelled)`` to extra item fields (``teacher_values``,
    ``teacher_indices``, ``teacher_confidence``, and ``tokens`` + ``pseudo`` when the teacher's
    1-best replaces the transcript): see asr_kd.distill.targets, which reads them off the cache.
    """

    def __init__(
        self,
        utts: Sequence[Utterance],
        store: FeatureStore | StoreUnion,
        cmvn: GlobalCMVN,
        tokenizer: Tokenizer,
        teacher: Callable[[str, str, bool], dict[str, torch.Tensor]] | None = None,
    ):
        missing = [u.id for u in utts if u.id not in store]
        if missing:
            raise KeyError(
                f"{len(missing)} utterance(s) have no features, e.g. {missing[:3]}; re-run features"
            )
        self.utts = list(utts)
        self.store, self.cmvn, self.tokenizer, self.teacher = store, cmvn, tokenizer, teacher

    @classmethod
    def from_exp(
        cls,
        paths,
        splits: str | Sequence[str],
        cmvn: GlobalCMVN,
        tokenizer: Tokenizer,
        teacher: Callable[[str, str, bool], dict[str, torch.Tensor]] | None = None,
        labelled: float | None = None,
        keep_untranscribed: bool = True,
    ) -> UtteranceDataset:
        """The dataset of one split, or several read as one, of an experiment directory
        (an :class:`asr_kd.paths.ExpPaths`); a split may be ``<split>:<N>``, its first N utterances
        (:func:`parse_split`). ``labelled`` (0..1): only the first such share of each split keeps its
        transcripts, the rest become untranscribed audio (dropped unless ``keep_untranscribed``)."""
        from asr_kd.data.manifest import read_manifest

        parsed = [parse_split(s) for s in ([splits] if isinstance(splits, str) else splits)]
        utts = []
        for split, limit in parsed:
            part = read_manifest(paths.manifest(split))[:limit]
            if labelled is not None:
                keep = round(labelled * len(part))
                hidden = [replace(u, text=None) for u in part[keep:]]
                part = part[:keep] + (hidden if keep_untranscribed else [])
            utts += part
        stores = [FeatureStore(paths.features(split)) for split, _ in parsed]
        return cls(utts, stores[0] if len(stores) == 1 else StoreUnion(stores), cmvn, tokenizer, teacher)

    def __len__(self) -> int:
        return len(self.utts)

    @property
    def frame_shift_s(self) -> float:
        """Seconds of audio per feature frame (the front end's frame shift)."""
        return self.store.frontend["frame_shift_ms"] / 1000

    def num_frames(self, i: int) -> int:
        return self.store.num_frames(self.utts[i].id)

    def audio_sha(self, i: int) -> str:
        """Content hash of utterance ``i``'s audio (the posterior cache's key)."""
        return self.store.utts[self.utts[i].id]["audio_sha"]

    def __getitem__(self, i: int) -> dict:
        utt = self.utts[i]
        item = {
            "id": utt.id,
            "feats": self.cmvn(torch.from_numpy(self.store[utt.id])),
            "tokens": torch.tensor(self.tokenizer.encode(utt.text or ""), dtype=torch.long),
            "labelled": utt.text is not None,
        }
        if self.teacher is not None:
            item.update(self.teacher(utt.id, self.audio_sha(i), utt.text is not None))
        return item


def _pad(seqs: list[torch.Tensor]) -> torch.Tensor:
    return torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True)


def collate(items: list[dict]) -> Batch:
    batch = Batch(
        ids=[it["id"] for it in items],
        feats=_pad([it["feats"] for it in items]),
        lengths=torch.tensor([len(it["feats"]) for it in items]),
        targets=_pad([it["tokens"] for it in items]),
        target_lengths=torch.tensor([len(it["tokens"]) for it in items]),
        labelled=torch.tensor([it.get("labelled", True) for it in items]),
        pseudo=torch.tensor([it.get("pseudo", False) for it in items]),
    )
    if "teacher_values" in items[0]:
        batch.teacher_values = _pad([it["teacher_values"] for it in items])
        batch.teacher_indices = _pad([it["teacher_indices"] for it in items])
        batch.teacher_lengths = torch.tensor([len(it["teacher_values"]) for it in items])
        batch.teacher_confidence = torch.tensor([it["teacher_confidence"] for it in items])
    return batch


class DurationBatchSampler(Sampler[list[int]]):
    """Batches of similar length holding at most ``max_frames`` feature frames (padding included).

    Utterances are sorted by length inside random buckets of ``bucket_size`` batches' worth, then
    the batches are shuffled; each epoch (``set_epoch``) reshuffles deterministically from ``seed``.
    With ``rank``/``world_size`` each DDP rank takes every ``world_size``-th batch (the last
    ``< world_size`` batches are dropped so every rank steps the same number of times).
    ``set_epoch(epoch, start)`` begins that epoch at its batch ``start``: a resumed run takes up
    the order where it stopped, and the skipped batches are never handed to the loader.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        max_frames: int,
        shuffle: bool = True,
        seed: int = 0,
        bucket_size: int = 50,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.lengths = list(lengths)
        self.max_frames, self.shuffle, self.seed = max_frames, shuffle, seed
        self.bucket_size, self.rank, self.world_size = bucket_size, rank, world_size
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Yield ``epoch``'s batches from its ``start``-th on (this rank's count) until the next call."""
        if start < 0:
            raise ValueError(f"DurationBatchSampler: start must be >= 0, not {start}")
        self.epoch, self.start = epoch, start

    def _batches(self) -> list[list[int]]:
        order = list(range(len(self.lengths)))
        rng = random.Random(self.seed + self.epoch)
        if self.shuffle:
            rng.shuffle(order)
            per_bucket = max(1, self.bucket_size * self.max_frames // max(1, max(self.lengths, default=1)))
            buckets = [order[i : i + per_bucket] for i in range(0, len(order), per_bucket)]
            order = [i for b in buckets for i in sorted(b, key=self.lengths.__getitem__)]
        else:
            order.sort(key=self.lengths.__getitem__)
        batches, current, longest = [], [], 0
        for i in order:
            longest_if_added = max(longest, self.lengths[i])
            if current and longest_if_added * (len(current) + 1) > self.max_frames:
                batches.append(current)
                current, longest_if_added = [], self.lengths[i]
            current.append(i)
            longest = longest_if_added
        if current:
            batches.append(current)
        if self.shuffle:
            rng.shuffle(batches)
        usable = len(batches) - len(batches) % self.world_size
        return batches[self.rank : usable : self.world_size]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches()[self.start :])

    def __len__(self) -> int:
        return len(self._batches()[self.start :])
