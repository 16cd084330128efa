"""The contract of a teacher cache beyond its storage format (asr_kd.distill.cache): the settings that
name it (:class:`CacheSpec`), the teachers that make it (``cache.teachers``: the teacher, the
cross-fitted fold teachers, or their ensemble), the metadata it must carry, how a shard is written
(teachers averaged in probability space, frames brought to the students' rate) and how a student
opens it, checked against all of that. The cache and student stages only orchestrate these.

Which teachers make a clip's posteriors: ``single``, the teacher; ``crossfit``, the fold teacher
that never trained on the clip (its fold's, from the folds file), or for a clip of no fold (the
``unlabeled`` split, evaluation splits) all K fold teachers; ``ensemble``, the teacher and all K
fold teachers. Several teachers' distributions are averaged in probability space over the full
vocabulary, then the log and the top k are taken.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import torch
from omegaconf import DictConfig

from asr_kd.data.dataset import DurationBatchSampler, UtteranceDataset
from asr_kd.data.folds import fold_of
from asr_kd.distill.bridge import fit_frames, merge_frames
from asr_kd.distill.cache import PosteriorCache, ShardWriter, check_meta, teacher_cache_meta
from asr_kd.distill.loss import FrameRateMismatchError
from asr_kd.features.store import FeatureStore
from asr_kd.models.adapters import BundleTeacher, TeacherAdapter, load_teacher
from asr_kd.models.bundle import load_bundle
from asr_kd.paths import ExpPaths
from asr_kd.utils import file_hash, read_json

__all__ = ["TEACHER_RULES", "CacheSettings", "CacheSpec", "cache_name", "model_name", "load_cache_teachers",
           "cache_meta_for", "write_shard", "average_teachers", "member_rule", "open_cache"]

#: ``cache.teachers``: one teacher, cross-fitted fold teachers, or the ensemble of all of them.
TEACHER_RULES = ("single", "crossfit", "ensemble")


@dataclass(kw_only=True)
class CacheSettings:
    """Types of the ``cache`` node (conf/cache/topk.yaml holds the values)."""

    k: int | None
    shard_utts: int
    max_frames: int
    device: str
    teachers: str
    folds: int
    part: int | None = None  # this job's part of the shards (None: all) of ``parts``; not in ``content``
    parts: int = 1


@dataclass(kw_only=True)
class CacheSpec(CacheSettings):
    """One teacher posterior cache: its settings, named, over ``splits``: top ``k`` (None: the full
    distribution), from the teacher(s) of rule ``teachers`` (:data:`TEACHER_RULES`; ``folds`` of them
    when not single)."""

    name: str
    splits: tuple[str, ...]

    @property
    def content(self) -> dict:
        """The settings that decide what the cache holds and how it is laid out (not how fast it is made)."""
        content = {"k": self.k, "shard_utts": self.shard_utts}
        return content if self.teachers == "single" else {**content, "teachers": self.teachers,
                                                          "folds": self.folds}

    @property
    def members(self) -> tuple[str, ...]:
        """The teacher units whose posteriors the cache holds (``teacher``, ``teacher/fold1of4``...)."""
        folds = tuple(f"teacher/fold{i}of{self.folds}" for i in range(1, self.folds + 1))
        return {"single": ("teacher",), "crossfit": folds, "ensemble": ("teacher", *folds)}[self.teachers]


def cache_name(k: int | None, teachers: str, folds: int) -> str:
    return f"{'teacher' if teachers == 'single' else f'{teachers}{folds}'}_{'full' if k is None else f'k{k}'}"


def model_name(unit: str) -> str:
    """The ``models/<name>`` of teacher unit ``unit`` (``teacher/fold1of4`` -> ``teacher_fold1of4``)."""
    return unit.replace("/", "_")


def load_cache_teachers(teacher: DictConfig, paths: ExpPaths, spec: CacheSpec) -> dict[str, TeacherAdapter]:
    """The teachers of cache ``spec`` in experiment ``paths`` (unit -> adapter): the run's ``teacher``,
    or the fold teachers (and the teacher) of a crossfit/ensemble cache."""
    if spec.teachers == "single":
        return {"teacher": load_teacher(teacher, paths)}
    return {unit: BundleTeacher(load_bundle(paths.checkpoint(model_name(unit)))) for unit in spec.members}


def cache_meta_for(teachers: dict[str, TeacherAdapter], paths: ExpPaths, spec: CacheSpec, split: str,
                   subsampling: int) -> dict:
    """The metadata (asr_kd.distill.cache) cache ``spec`` of ``split`` made by ``teachers`` must carry
    for students that subsample the features ``subsampling`` times: what the cache stage writes and
    students check."""
    views = read_json(paths.views).get(split, {}) if paths.views.exists() else {}
    folds_sha = None if spec.teachers == "single" else file_hash(paths.folds(spec.folds))
    frontend = FeatureStore(paths.features(split)).frontend
    return teacher_cache_meta(teachers, frontend, file_hash(paths.cmvn), subsampling, spec.k, views,
                              spec.teachers, folds_sha)


@torch.no_grad()
def write_shard(teachers: list[TeacherAdapter], members: Callable[[str], tuple[int, ...]],
                dataset: UtteranceDataset, shard: int, items: list[int], k, max_frames: int, folder,
                subsampling: int, merge: int):
    """Teacher forward over ``items`` (dataset indices) in length-sorted batches, its posteriors brought
    to the student's frame rate (``merge`` teacher frames per student frame); one shard. An
    utterance's posteriors are those of ``teachers[m] for m in members(utt id)``, averaged."""
    writer = ShardWriter(folder, shard, vocab_size=len(teachers[0].tokens), k=k)
    groups = defaultdict(list)  # utterances with the same teachers are batched together
    for i in items:
        groups[members(dataset.utts[i].id)].append(i)
    for group, group_items in sorted(groups.items()):
        lengths = [dataset.num_frames(i) for i in group_items]
        for batch_pos in DurationBatchSampler(lengths, max_frames, shuffle=False):
            batch_items = [group_items[p] for p in batch_pos]
            log_probs, out_lengths = average_teachers([teachers[m] for m in group], dataset, batch_items)
            for row, i in enumerate(batch_items):
                utt = dataset.utts[i]
                student_frames = -(-dataset.num_frames(i) // subsampling)
                row_log_probs = merge_frames(log_probs[row, : int(out_lengths[row])], merge)
                row_log_probs = fit_frames(row_log_probs, student_frames, utt.id)
                if k is not None:
                    values, indices = row_log_probs.topk(k, dim=-1)
                    values, indices = values.cpu().numpy(), indices.cpu().numpy()
                else:
                    values, indices = row_log_probs.cpu().numpy(), None
                writer.add(PosteriorCache.key(utt.id, dataset.audio_sha(i)), values, indices)
    writer.close()


def average_teachers(teachers: list[TeacherAdapter], dataset: UtteranceDataset,
             items: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The log of the mean of ``teachers``' frame posteriors (probability space, full vocabulary)."""
    outputs = []
    for teacher in teachers:
        x, x_lengths = teacher.inputs(dataset, items)
        outputs.append(teacher.log_posteriors(x.to(teacher.device), x_lengths.to(teacher.device)))
    if len(outputs) == 1:
        return outputs[0]
    stacked = torch.stack([log_probs.float() for log_probs, _ in outputs])
    return torch.logsumexp(stacked, 0) - math.log(len(outputs)), outputs[0][1]


def member_rule(spec: CacheSpec, folds: dict | None) -> Callable[[str], tuple[int, ...]]:
    """Which of ``spec.members`` (by position) make an utterance's posteriors (module docstring)."""
    everyone = tuple(range(len(spec.members)))
    if spec.teachers != "crossfit":
        return lambda utt_id: everyone

    def out_of_fold(utt_id: str) -> tuple[int, ...]:
        fold = fold_of(folds, utt_id)
        return everyone if fold is None else (fold - 1,)  # members are the fold teachers, in order

    return out_of_fold


def open_cache(paths: ExpPaths, spec: CacheSpec, split: str, student_subsampling: int,
               frame_shift_ms: float, teachers: dict[str, TeacherAdapter]) -> PosteriorCache:
    """Cache ``spec`` of ``split``, checked against the ``teachers`` that make it (the run's teacher,
    or the fold teachers and folds of a crossfit/ensemble cache: load_cache_teachers),
    the features, the split's views and the student's frame rate (``student_subsampling`` x the
    features' ``frame_shift_ms``)."""
    cache = PosteriorCache(paths.cache_dir(spec.name, split))
    student_shift = student_subsampling * frame_shift_ms
    if student_shift != cache.meta["frame_shift_ms"]:
        raise FrameRateMismatchError(
            f"the student emits a frame every {student_shift} ms, the teacher cache {spec.name} every "
            f"{cache.meta['frame_shift_ms']} ms (teacher frames of "
            f"{cache.meta.get('teacher_frame_shift_ms', cache.meta['frame_shift_ms']):g} ms, merged "
            f"{cache.meta.get('merge', 1)} to 1); re-run `asr-kd stage=cache force=true` for this student"
        )
    check_meta(cache.meta, cache_meta_for(teachers, paths, spec, split, student_subsampling), cache.folder)
    return cache
