"""Stage ``cache``: run the teacher once over the training splits and store its top-k posteriors,
once per cache setting the systems ask for.

Reads:  the teacher (``models/teacher/model.pt``, or a pretrained one: asr_kd.models.adapters),
        ``features/<split>`` (or, for a teacher that reads audio, the audio), ``data/<split>.jsonl``.
Writes: ``cache/<name>/<split>/`` (format in asr_kd.distill.cache; ``<name>``: ``teacher_k16``,
        ``teacher_full``... from each distilled system's ``cache.k``, asr_kd.stages.plan) and its
        ``summary.json``.
Run:    ``asr-kd stage=cache [cache.k=16|null] [cache.device=auto|cpu|cuda]``; under ``torchrun``
        each rank writes its own shards (one index: the shard files themselves).

Posteriors are stored at the students' frame rate: a teacher with shorter frames (wav2vec 2.0's
20 ms) has them merged (asr_kd.distill.bridge), and the cache metadata records both rates.
Shards are finished one by one, so a killed run resumes at the first missing shard. A cache
made with other metadata (teacher, features, vocabulary, k) or another layout (``shard_utts``) is
cleared before writing, never mixed.
"""

from __future__ import annotations

import logging
import time

import torch
from omegaconf import DictConfig
from tqdm import tqdm

from asr_kd.config import instantiate
from asr_kd.data.dataset import DurationBatchSampler, UtteranceDataset
from asr_kd.data.tokenizer import CharTokenizer
from asr_kd.distill.bridge import fit_frames, merge_frames
from asr_kd.distill.cache import PosteriorCache, ShardWriter, shard_name, teacher_cache_meta, write_meta
from asr_kd.errors import ConfigError
from asr_kd.features.cmvn import GlobalCMVN
from asr_kd.features.store import FeatureStore
from asr_kd.models.adapters import TeacherAdapter, load_teacher
from asr_kd.stages.base import StageStamp
from asr_kd.stages.plan import CacheSpec, Plan
from asr_kd.training.distributed import barrier, init_distributed, resolve_device
from asr_kd.utils import file_hash, read_json, write_json

log = logging.getLogger(__name__)


def _prepare_folder(folder, meta: dict) -> None:
    """Keep finished shards only if they were made with the same metadata and layout."""
    folder.mkdir(parents=True, exist_ok=True)
    meta_path = folder / "meta.json"
    if meta_path.exists():
        old = {k: v for k, v in read_json(meta_path).items() if k != "created"}
        if old == meta:
            return
        log.info("cache: metadata or layout changed (teacher, features, k, shard_utts); clearing %s", folder)
    for f in folder.glob("shard-*"):
        f.unlink()
    (folder / "summary.json").unlink(missing_ok=True)
    write_meta(folder, meta)


@torch.no_grad()
def write_shard(teacher: TeacherAdapter, dataset: UtteranceDataset, shard: int, items: list[int], k,
                max_frames: int, folder, subsampling: int, merge: int):
    """Teacher forward over ``items`` (dataset indices) in length-sorted batches, its posteriors brought
    to the student's frame rate (``merge`` teacher frames per student frame); one shard."""
    writer = ShardWriter(folder, shard, vocab_size=len(teacher.tokens), k=k)
    lengths = [dataset.num_frames(i) for i in items]
    for batch_pos in DurationBatchSampler(lengths, max_frames, shuffle=False):
        x, x_lengths = teacher.inputs(dataset, [items[p] for p in batch_pos])
        log_probs, out_lengths = teacher.log_posteriors(x.to(teacher.device), x_lengths.to(teacher.device))
        for row, p in enumerate(batch_pos):
            utt = dataset.utts[items[p]]
            student_frames = -(-lengths[p] // subsampling)
            row_log_probs = merge_frames(log_probs[row, : int(out_lengths[row])], merge)
            row_log_probs = fit_frames(row_log_probs, student_frames, utt.id)
            if k is not None:
                values, indices = row_log_probs.topk(k, dim=-1)
                values, indices = values.cpu().numpy(), indices.cpu().numpy()
            else:
                values, indices = row_log_probs.cpu().numpy(), None
            writer.add(PosteriorCache.key(utt.id, dataset.audio_sha(items[p])), values, indices)
    writer.close()


def student_subsampling(plan: Plan, spec: CacheSpec, input_dim: int) -> int:
    """The subsampling of the students that read cache ``spec`` (they must share one frame rate)."""
    factors = {name: instantiate(s.student["model"], vocab_size=2, input_dim=input_dim).subsampling_factor
               for name, s in plan.systems.items() if s.cache == spec.name}
    if len(set(factors.values())) > 1:
        raise ConfigError(f"cache {spec.name}: its students subsample by {factors}; systems that share a "
                          "cache must share a frame rate")
    return next(iter(factors.values()))


def build_cache(cfg: DictConfig, plan: Plan, spec: CacheSpec, split: str) -> None:
    """Write cache ``spec`` of ``split`` (skipped when its stamp is up to date)."""
    stamp = StageStamp(cfg, f"cache/{spec.name}/{split}", plan)
    if stamp.is_done():
        return
    paths = stamp.paths
    folder = paths.cache_dir(spec.name, split)
    device = resolve_device(spec.device)
    rank, world = init_distributed(device)
    teacher = load_teacher(cfg.teacher, paths)
    frontend = FeatureStore(paths.features(split)).frontend
    subsampling = student_subsampling(plan, spec, frontend["num_mel_bins"])
    meta = {**teacher_cache_meta(teacher, frontend, file_hash(paths.cmvn), subsampling, spec.k),
            "layout": {"shard_utts": spec.shard_utts}}
    if rank == 0:
        _prepare_folder(folder, meta)
    barrier()
    teacher.to(device)
    cmvn = GlobalCMVN.load(paths.cmvn)  # the batches' lengths; a bundle teacher normalises with its own
    dataset = UtteranceDataset.from_exp(paths, split, cmvn, CharTokenizer(teacher.tokens))
    order = sorted(range(len(dataset)), key=lambda i: dataset.utts[i].id)
    shards = [order[i : i + spec.shard_utts] for i in range(0, len(order), spec.shard_utts)]
    todo = [s for s in range(rank, len(shards), world) if not (folder / f"{shard_name(s)}.json").exists()]
    log.info("cache %s/%s: %d shards, %d to write (rank %d/%d); teacher %s, %g ms frames, %d per student "
             "frame", spec.name, split, len(shards), len(todo), rank, world, teacher.architecture,
             teacher.frame_shift_ms, meta["merge"])
    start = time.perf_counter()
    for s in tqdm(todo, desc=f"cache {spec.name}/{split}", dynamic_ncols=True):
        write_shard(teacher, dataset, s, shards[s], spec.k, spec.max_frames, folder, subsampling,
                    meta["merge"])
    elapsed = time.perf_counter() - start
    barrier()
    if rank != 0:
        return
    cache = PosteriorCache(folder, expected=meta)
    if len(cache) != len(dataset):
        raise RuntimeError(f"cache {folder}: {len(cache)} of {len(dataset)} utterances cached; "
                           "re-run stage=cache")
    size = sum(f.stat().st_size for f in folder.glob("shard-*") if f.suffix in (".val", ".idx"))
    audio = sum(u.duration for u in dataset.utts)
    todo_audio = sum(dataset.utts[i].duration for s in todo for i in shards[s])
    summary = {
        "utterances": len(cache),
        "frames": cache.frames,
        "bytes_per_frame": size / max(1, cache.frames),
        "size_bytes": size,
        "k": spec.k,
        "x_realtime": todo_audio / elapsed if todo else None,
        "audio_hours": audio / 3600,
        "full_fp32_bytes_per_frame": 4 * cache.vocab_size,
    }
    write_json(folder / "summary.json", summary)
    log.info("cache %s/%s: %s", spec.name, split, summary)
    stamp.done(summary)


def run(cfg: DictConfig) -> None:
    plan = Plan(cfg)
    if not plan.caches:
        log.info("cache: no system distils from the teacher; nothing to cache")
    for spec in plan.caches.values():
        for split in spec.splits:
            build_cache(cfg, plan, spec, split)
