"""Stage ``cache``: run the teacher once over the training splits and store its top-k posteriors,
once per cache setting the systems ask for.

Reads:  the teacher (``models/teacher/model.pt``, or a pretrained one: asr_kd.models.adapters; or the
        fold teachers ``models/teacher_fold<i>of<K>/model.pt`` and ``models/folds<K>.json``),
        ``features/<split>`` (or, for a teacher that reads audio, the audio), ``data/<split>.jsonl``,
        ``data/views.json``.
Writes: ``cache/<name>/<split>/`` (format in asr_kd.distill.cache; ``<name>``: ``teacher_k16``,
        ``teacher_full``, ``crossfit4_k16``, ``ensemble4_k16``... from each distilled system's
        ``cache`` settings, asr_kd.stages.plan) and its ``summary.json``.
Run:    ``asr-kd stage=cache [cache.k=16|null] [cache.device=auto|cpu|cuda]``; under ``torchrun``
        each rank writes its own shards. On a cluster, ``asr-kd stage=cache cache.parts=N
        'cache.part=range(N)' hydra/launcher=slurm --multirun`` maps the shards over a job
        array: job I writes shards ``s % N == I`` into the shared exp_dir; the job that finds every
        shard finished verifies the whole and stamps it (docs/scaling.md).

Posteriors are stored at the students' frame rate: a teacher with shorter frames (wav2vec 2.0's
20 ms) has them merged (asr_kd.distill.bridge), and the cache metadata records both rates.
Shards are finished one by one, so a killed or requeued job redoes only its unfinished shards
(``force=true`` rewrites every shard of its parts). A shard made with other metadata (teachers,
features, vocabulary, k, views), another layout (``shard_utts``) or other utterances is unfinished
(asr_kd.distill.cache.missing_shards), never mixed.

Which teachers make a clip's posteriors (``cache.teachers``), how they are averaged and what the
cache must carry: asr_kd.distill.teacher_cache; this stage runs them over the shards.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from omegaconf import DictConfig
from tqdm import tqdm

from asr_kd.data.dataset import UtteranceDataset
from asr_kd.data.tokenizer import CharTokenizer
from asr_kd.distill.cache import (
    PosteriorCache,
    missing_shards,
    read_index,
    shard_name,
    shard_part,
    write_index,
    write_meta,
)
from asr_kd.distill.teacher_cache import (
    CacheSpec,
    cache_meta_for,
    load_cache_teachers,
    member_rule,
    write_shard,
)
from asr_kd.errors import ConfigError
from asr_kd.features.cmvn import GlobalCMVN
from asr_kd.features.store import FeatureStore
from asr_kd.stages.base import StageStamp
from asr_kd.stages.plan import Plan
from asr_kd.training.distributed import barrier, init_distributed, resolve_device
from asr_kd.utils import read_json, write_json

log = logging.getLogger(__name__)


def _prepare_folder(folder, meta: dict, ours: Callable[[int], bool], force: bool) -> None:
    """Write ``meta`` if it changed (teachers, features, k, views, shard_utts) or under ``force``,
    deleting the shards this job's parts write (``ours``; other parts' stale shards are unfinished
    under the new metadata)."""
    folder.mkdir(parents=True, exist_ok=True)
    meta_path = folder / "meta.json"
    if meta_path.exists() and not force:
        old = {k: v for k, v in read_json(meta_path).items() if k != "created"}
        if old == meta:
            return
        log.info("cache: metadata or layout changed (teachers, features, k, views, shard_utts); clearing %s",
                 folder)
    for f in folder.glob("shard-*"):
        if ours(int(f.name.split(".")[0].split("-")[1])):
            f.unlink()
    (folder / "summary.json").unlink(missing_ok=True)
    write_meta(folder, meta)


def build_cache(cfg: DictConfig, plan: Plan, spec: CacheSpec, split: str) -> None:
    """Write cache ``spec`` of ``split`` (skipped when its stamp is up to date and no shard is missing)."""
    stamp = StageStamp(cfg, f"cache/{spec.name}/{split}", plan)
    paths = stamp.paths
    folder = paths.cache_dir(spec.name, split)
    complete = (folder / "index.json").exists() and not missing_shards(folder, read_index(folder))
    if complete and stamp.is_done():
        return  # a shard deleted since (or a cache older than its index) is redone
    device = resolve_device(spec.device)
    rank, world = init_distributed(device)
    frontend = FeatureStore(paths.features(split)).frontend
    subsampling = plan.cache_subsampling(spec, frontend["num_mel_bins"])
    teachers = load_cache_teachers(cfg.teacher, paths, spec)
    vocab_size = len(next(iter(teachers.values())).tokens)
    if spec.k is not None and spec.k > vocab_size:  # before anything is written
        raise ConfigError(f"cache.k={spec.k} is more than the teacher's {vocab_size} tokens; use "
                          f"1..{vocab_size}, or cache.k=null for the full distribution")
    meta = {**cache_meta_for(teachers, paths, spec, split, subsampling),
            "layout": {"shard_utts": spec.shard_utts}}
    teachers = [teacher.to(device) for teacher in teachers.values()]
    members = member_rule(spec, read_json(paths.folds(spec.folds)) if spec.teachers == "crossfit" else None)
    cmvn = GlobalCMVN.load(paths.cmvn)  # the batches' lengths; a bundle teacher normalises with its own
    dataset = UtteranceDataset.from_exp(paths, split, cmvn, CharTokenizer(teachers[0].tokens))
    order = sorted(range(len(dataset)), key=lambda i: dataset.utts[i].id)
    shards = [order[i : i + spec.shard_utts] for i in range(0, len(order), spec.shard_utts)]
    parts = range(spec.parts) if spec.part is None else (spec.part,)

    def ours(shard: int) -> bool:
        return shard_part(shard, spec.parts) in parts

    mine = [s for s in range(len(shards)) if ours(s)]
    if rank == 0:
        _prepare_folder(folder, meta, ours, stamp.force)
        write_index(folder, [[PosteriorCache.key(dataset.utts[i].id, dataset.audio_sha(i)) for i in shard]
                             for shard in shards], spec.parts)
    barrier()
    index = read_index(folder)
    unfinished = set(missing_shards(folder, index))
    todo = [s for s in mine[rank::world] if s in unfinished]
    log.info("cache %s/%s: %d shards, part %s of %d: %d to write (rank %d/%d); %d teacher(s) %s, %g ms "
             "frames, %d per student frame", spec.name, split, len(shards), "all" if spec.part is None else
             spec.part, spec.parts, len(todo), rank, world, len(teachers), teachers[0].architecture,
             teachers[0].frame_shift_ms, meta["merge"])
    start = time.perf_counter()
    for s in tqdm(todo, desc=f"cache {spec.name}/{split}", dynamic_ncols=True):
        write_shard(teachers, members, dataset, s, shards[s], spec.k, spec.max_frames, folder, subsampling,
                    meta["merge"])
    elapsed = time.perf_counter() - start
    barrier()
    if rank != 0:
        return
    missing = missing_shards(folder, index)
    if spec.part is not None and missing:
        log.info("cache %s/%s: part %d of %d finished; %d shard(s) of other parts to come, the last part "
                 "verifies and stamps the cache", spec.name, split, spec.part, spec.parts, len(missing))
        return
    cache = PosteriorCache(folder, expected=meta)  # refuses missing shards; checks every shard's checksum
    size = sum(f.stat().st_size for s in range(len(shards)) for f in folder.glob(f"{shard_name(s)}.*")
               if f.suffix in (".val", ".idx"))
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
