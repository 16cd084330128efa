"""Stage ``cache``: run the teacher once over the training splits and store its top-k posteriors,
once per cache setting the systems ask for.

Reads:  ``models/teacher/model.pt`` (or the fold teachers ``models/teacher_fold<i>of<K>/model.pt``
        and ``models/folds<K>.json``), ``features/<split>``, ``data/<split>.jsonl``, ``data/views.json``.
Writes: ``cache/<name>/<split>/`` (format in asr_kd.distill.cache; ``<name>``: ``teacher_k16``,
        ``teacher_full``, ``crossfit4_k16``, ``ensemble4_k16``... from each distilled system's
        ``cache`` settings, asr_kd.stages.plan) and its ``summary.json``.
Run:    ``asr-kd stage=cache [cache.k=16|null] [cache.device=auto|cpu|cuda]``; under ``torchrun``
        each rank writes its own shards (one index: the shard files themselves).

Shards are finished one by one, so a killed run resumes at the first missing shard. A cache
made with other metadata (teachers, features, vocabulary, k, views) or another layout
(``shard_utts``) is cleared before writing, never mixed.

Which teachers make a clip's posteriors (``cache.teachers``): ``single``, the teacher;
``crossfit``, the fold teacher that never trained on the clip (its fold's, from the folds file),
or for a clip of no fold (the ``unlabeled`` split, evaluation splits) all K fold teachers;
``ensemble``, the teacher and all K fold teachers. Several teachers' distributions are averaged
in probability space over the full vocabulary, then the log and the top k are taken.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable

import torch
from omegaconf import DictConfig
from tqdm import tqdm

from asr_kd.data.dataset import DurationBatchSampler, UtteranceDataset, collate
from asr_kd.data.folds import fold_of
from asr_kd.distill.cache import PosteriorCache, ShardWriter, shard_name, write_meta
from asr_kd.stages.base import StageStamp
from asr_kd.stages.plan import CacheSpec, Plan, cache_teachers
from asr_kd.training.distributed import barrier, init_distributed, resolve_device
from asr_kd.utils import read_json, write_json

log = logging.getLogger(__name__)


def _prepare_folder(folder, meta: dict) -> None:
    """Keep finished shards only if they were made with the same metadata and layout."""
    folder.mkdir(parents=True, exist_ok=True)
    meta_path = folder / "meta.json"
    if meta_path.exists():
        old = {k: v for k, v in read_json(meta_path).items() if k != "created"}
        if old == meta:
            return
        log.info("cache: metadata or layout changed (teachers, features, k, views, shard_utts); clearing %s",
                 folder)
    for f in folder.glob("shard-*"):
        f.unlink()
    (folder / "summary.json").unlink(missing_ok=True)
    write_meta(folder, meta)


@torch.no_grad()
def write_shard(teachers: list, members: Callable[[str], tuple[int, ...]], dataset: UtteranceDataset,
                shard: int, items: list[int], k, max_frames: int, folder):
    """Teacher forward over ``items`` (dataset indices) in length-sorted batches; one shard. An
    utterance's posteriors are those of ``teachers[m] for m in members(utt id)``, averaged."""
    device = next(teachers[0].parameters()).device
    writer = ShardWriter(folder, shard, vocab_size=len(dataset.tokenizer), k=k)
    groups = defaultdict(list)  # utterances with the same teachers are batched together
    for i in items:
        groups[members(dataset.utts[i].id)].append(i)
    for group, group_items in sorted(groups.items()):
        lengths = [dataset.num_frames(i) for i in group_items]
        for batch_pos in DurationBatchSampler(lengths, max_frames, shuffle=False):
            batch = collate([dataset[group_items[p]] for p in batch_pos]).to(device)
            log_probs, out_lengths = _average([teachers[m] for m in group], batch)
            if k is not None:
                values, indices = log_probs.topk(k, dim=-1)
                values, indices = values.cpu(), indices.cpu()
            else:
                values, indices = log_probs.cpu(), None
            out_lengths = out_lengths.cpu()
            for row, p in enumerate(batch_pos):
                i, n = group_items[p], int(out_lengths[row])
                key = PosteriorCache.key(dataset.utts[i].id, dataset.audio_sha(i))
                top = None if indices is None else indices[row, :n].numpy()
                writer.add(key, values[row, :n].numpy(), top)
    writer.close()


def _average(models: list, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """The log of the mean of ``models``' frame posteriors (probability space, full vocabulary)."""
    outputs = [model(batch.feats, batch.lengths) for model in models]
    log_probs = [logits.float().log_softmax(-1) for logits, _ in outputs]
    if len(log_probs) == 1:
        return log_probs[0], outputs[0][1]
    return torch.logsumexp(torch.stack(log_probs), 0) - math.log(len(log_probs)), outputs[0][1]


def _members(spec: CacheSpec, folds: dict | None) -> Callable[[str], tuple[int, ...]]:
    """Which of ``spec.members`` (by position) make an utterance's posteriors (module docstring)."""
    everyone = tuple(range(len(spec.members)))
    if spec.teachers != "crossfit":
        return lambda utt_id: everyone

    def out_of_fold(utt_id: str) -> tuple[int, ...]:
        fold = fold_of(folds, utt_id)
        return everyone if fold is None else (fold - 1,)  # members are the fold teachers, in order

    return out_of_fold


def build_cache(cfg: DictConfig, plan: Plan, spec: CacheSpec, split: str) -> None:
    """Write cache ``spec`` of ``split`` (skipped when its stamp is up to date)."""
    stamp = StageStamp(cfg, f"cache/{spec.name}/{split}", plan)
    if stamp.is_done():
        return
    paths = stamp.paths
    folder = paths.cache_dir(spec.name, split)
    device = resolve_device(spec.device)
    rank, world = init_distributed(device)
    bundles, meta = cache_teachers(paths, spec, split)
    meta = {**meta, "layout": {"shard_utts": spec.shard_utts}}
    if rank == 0:
        _prepare_folder(folder, meta)
    barrier()
    teachers = [bundle.model.to(device) for bundle in bundles.values()]
    members = _members(spec, read_json(paths.folds(spec.folds)) if spec.teachers == "crossfit" else None)
    first = next(iter(bundles.values()))
    dataset = UtteranceDataset.from_exp(paths, split, first.cmvn, first.tokenizer)
    order = sorted(range(len(dataset)), key=lambda i: dataset.utts[i].id)
    shards = [order[i : i + spec.shard_utts] for i in range(0, len(order), spec.shard_utts)]
    todo = [s for s in range(rank, len(shards), world) if not (folder / f"{shard_name(s)}.json").exists()]
    log.info("cache %s/%s: %d shards, %d to write (rank %d/%d)", spec.name, split, len(shards), len(todo),
             rank, world)
    start = time.perf_counter()
    for s in tqdm(todo, desc=f"cache {spec.name}/{split}", dynamic_ncols=True):
        write_shard(teachers, members, dataset, s, shards[s], spec.k, spec.max_frames, folder)
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
