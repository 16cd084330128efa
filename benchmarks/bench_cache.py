"""Teacher posterior cache: writing speed against the teacher's forward, size per frame, read speed.

Given an experiment directory where ``prepare``, ``features`` and ``teacher`` have run, it measures

(a) the teacher's pure forward throughput over the train features: the model call alone (no
    gradients, as the stage runs it) on the very batches the cache stage forms (per shard,
    length-sorted, ``cache.max_frames``), x real time;
(b) the cache stage itself, ``asr_kd.stages.cache.run`` (forward + top-k + write + checksums),
    from the stage's own ``x_realtime`` (its shard loop) and from the wall clock of the whole call;
    the target is (b) >= 90 % of (a);
(c) bytes per frame for k in {1, 4, 16, full}, from files written by the real writer
    (``asr_kd.distill.cache.ShardWriter``: fp16 values + uint8/uint16 token ids; the mass outside
    the top k is derived, ``1 - sum(exp(values))``, so it costs 0 bytes), and the ratio to full
    fp32 posteriors, for the experiment's vocabulary (real teacher outputs, via the stage's
    ``write_shard``, asr_kd.distill.teacher_cache) and for a 500-token BPE vocabulary (random
    posteriors: the size does not
    depend on the values); plus the error fp16 storage puts on that derived rest mass;
(d) random-access reads of ``PosteriorCache`` (frames/s, utterances/s; page cache warm) and the
    time to open it with checksum verification.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_cache.py --exp-dir /tmp/exp_bench [--repeats 3] [--threads 1]
        [--k 16] [--override KEY=VALUE ...] [--json PATH]

The stage run leaves ``<exp_dir>/cache`` (k = ``--k``) in place, so ``bench_train.py`` can then time
the distilling student. Figures are medians of ``--repeats`` runs. Prints tables and writes
``--json`` (default ``benchmarks/results/cache.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np
import torch

from asr_kd.data.dataset import DurationBatchSampler, UtteranceDataset, collate
from asr_kd.distill.cache import PosteriorCache, ShardWriter, write_index
from asr_kd.distill.teacher_cache import CacheSpec, write_shard
from asr_kd.models.adapters import BundleTeacher
from asr_kd.models.bundle import load_bundle
from asr_kd.stages import cache as cache_stage
from asr_kd.stages.base import exp_paths
from asr_kd.stages.plan import Plan

REPO = Path(__file__).resolve().parent.parent
KS = (1, 4, 16, None)
BPE_VOCAB = 500


def compose_config(exp_dir: Path, overrides: list[str]):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=[f"exp_dir={exp_dir}", *overrides])


def stage_batches(dataset: UtteranceDataset, shard_utts: int, max_frames: int) -> list[list[int]]:
    """Dataset indices of each teacher batch, formed as ``asr_kd.stages.cache`` forms them."""
    order = sorted(range(len(dataset)), key=lambda i: dataset.utts[i].id)
    out = []
    for s in range(0, len(order), shard_utts):
        items = order[s : s + shard_utts]
        lengths = [dataset.num_frames(i) for i in items]
        out += [[items[p] for p in b] for b in DurationBatchSampler(lengths, max_frames, shuffle=False)]
    return out


@torch.no_grad()
def pure_forward(model, dataset: UtteranceDataset, batches: list[list[int]]) -> tuple[float, float]:
    """Wall and CPU seconds in ``model(feats, lengths)`` alone over ``batches`` (collation not timed)."""
    wall = cpu = 0.0
    for b in batches:
        batch = collate([dataset[i] for i in b])
        start, start_cpu = time.perf_counter(), time.process_time()
        model(batch.feats, batch.lengths)
        wall += time.perf_counter() - start
        cpu += time.process_time() - start_cpu
    return wall, cpu


def default_cache(cfg) -> tuple[Plan, CacheSpec]:
    """The plan of ``cfg`` and the cache of the top-level ``cache`` settings (student_kd's)."""
    plan = Plan(cfg)
    return plan, next(spec for spec in plan.caches.values() if spec.k == cfg.cache.k)


def run_stage(cfg) -> tuple[float, float, dict]:
    """One cold run of the cache stage for the default cache of train (its folder removed first; the
    config has force=true): wall and CPU seconds, its summary."""
    plan, spec = default_cache(cfg)
    folder = exp_paths(cfg).cache_dir(spec.name, "train")
    shutil.rmtree(folder, ignore_errors=True)
    start, start_cpu = time.perf_counter(), time.process_time()
    cache_stage.build_cache(cfg, plan, spec, "train")
    wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    return wall, cpu, json.loads((folder / "summary.json").read_text())


def shard_bytes(folder: Path) -> tuple[int, int]:
    size = sum(f.stat().st_size for f in folder.glob("shard-*") if f.suffix in (".val", ".idx"))
    frames = sum(json.loads(f.read_text())["frames"] for f in folder.glob("shard-*.json"))
    return size, frames


def bytes_real_teacher(bundle, dataset, items: list[int], max_frames: int, scratch: Path) -> dict:
    """Bytes/frame of the stage's own ``write_shard`` output for each k, on real teacher posteriors,
    and the error of the derived rest mass ``1 - sum(exp(top-k))`` read back from fp16."""
    out = {}
    with torch.no_grad():
        logp = []
        for b in DurationBatchSampler([dataset.num_frames(i) for i in items], max_frames, shuffle=False):
            batch = collate([dataset[items[p]] for p in b])
            logits, lengths = bundle.model(batch.feats, batch.lengths)
            lp = logits.float().log_softmax(-1)
            logp += [(items[p], lp[row, : int(lengths[row])]) for row, p in enumerate(b)]
    truth = {i: x for i, x in logp}
    for k in KS:
        folder = scratch / f"real_k{k}"
        folder.mkdir(parents=True)
        (folder / "meta.json").write_text(json.dumps({"k": k, "vocabulary": bundle.tokenizer.tokens}))
        write_shard([BundleTeacher(bundle)], lambda _: (0,), dataset, 0, items, k, max_frames,
                                folder, bundle.model.subsampling_factor, merge=1)
        keys = [PosteriorCache.key(dataset.utts[i].id, dataset.audio_sha(i)) for i in items]
        write_index(folder, [keys], parts=1)
        size, frames = shard_bytes(folder)
        cache = PosteriorCache(folder)
        errors = []
        for i in items:
            utt = dataset.utts[i]
            values, _ = cache[PosteriorCache.key(utt.id, dataset.audio_sha(i))]
            exact = truth[i].topk(k, -1).values if k is not None else truth[i]
            rest_fp16 = 1 - np.exp(values.astype(np.float64)).sum(-1)
            rest_fp32 = 1 - np.exp(exact.double().numpy()).sum(-1)
            errors.append(np.abs(rest_fp16 - rest_fp32))
        err = np.concatenate(errors)
        out[str(k or "full")] = {"bytes_per_frame": size / frames, "frames": frames,
                                 "rest_mass_abs_err_median": float(np.median(err)),
                                 "rest_mass_abs_err_max": float(err.max())}
    return out


def bytes_synthetic(vocab_size: int, frames: int, scratch: Path) -> dict:
    """Bytes/frame of ``ShardWriter`` output for a ``vocab_size`` vocabulary (random posteriors)."""
    out = {}
    gen = torch.Generator().manual_seed(0)
    logp = (3 * torch.randn(frames, vocab_size, generator=gen)).log_softmax(-1)
    for k in KS:
        folder = scratch / f"v{vocab_size}_k{k}"
        folder.mkdir(parents=True)
        vocabulary = [str(v) for v in range(vocab_size)]
        (folder / "meta.json").write_text(json.dumps({"k": k, "vocabulary": vocabulary}))
        writer = ShardWriter(folder, 0, vocab_size=vocab_size, k=k)
        for start in range(0, frames, 500):
            chunk = logp[start : start + 500]
            values, indices = chunk.topk(k, -1) if k is not None else (chunk, None)
            writer.add(f"u{start}:x", values.numpy(), None if indices is None else indices.numpy())
        writer.close()
        size, n = shard_bytes(folder)
        out[str(k or "full")] = {"bytes_per_frame": size / n, "frames": n}
    return out


def read_speed(folder: Path, repeats: int) -> dict:
    """Random-access reads of every entry of the cache at ``folder``; open time with verification."""
    opens, runs = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        cache = PosteriorCache(folder, verify=True)
        opens.append(time.perf_counter() - start)
        keys = list(cache._entries)
        random.Random(0).shuffle(keys)
        frames = 0
        start = time.perf_counter()
        for key in keys:
            values, indices = cache[key]
            frames += len(values)
        runs.append(time.perf_counter() - start)
    t = statistics.median(runs)
    return {"open_verify_s": statistics.median(opens), "read_s": t, "frames": frames, "utterances": len(keys),
            "frames_per_s": frames / t, "utts_per_s": len(keys) / t, "runs_s": runs}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--exp-dir", type=Path, required=True, help="experiment dir with features and a teacher")
    p.add_argument("--override", action="append", default=[], help="a Hydra override; repeatable")
    p.add_argument("--k", default="16", help="top-k of the timed stage run ('null' for full posteriors)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads for (a) and (b)")
    p.add_argument("--size-utts", type=int, default=200, help="utterances used for the real-teacher sizes")
    p.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "cache.json")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    cfg = compose_config(args.exp_dir.absolute(), [f"cache.k={args.k}", "force=true", *args.override])
    paths = exp_paths(cfg)
    if not paths.checkpoint("teacher").exists():
        sys.exit(f"{paths.root}: no teacher; run prepare, features and teacher (see benchmarks/README.md)")
    bundle = load_bundle(paths.checkpoint("teacher"))
    dataset = UtteranceDataset.from_exp(paths, "train", bundle.cmvn, bundle.tokenizer)
    audio_s = sum(u.duration for u in dataset.utts)
    params = sum(p.numel() for p in bundle.model.parameters())
    print(f"# {paths.root}: {len(dataset)} train utterances, {audio_s / 3600:.2f} h; teacher "
          f"{bundle.model_config['_target_']} ({params / 1e6:.2f}M), "
          f"V={len(bundle.tokenizer)}; torch threads {args.threads}; {os.cpu_count()} CPU cores visible, "
          f"shared with other jobs (medians of {args.repeats} runs, still noisy)")

    batches = stage_batches(dataset, cfg.cache.shard_utts, cfg.cache.max_frames)
    pure_forward(bundle.model, dataset, batches[:1])  # warm-up
    names = ("forward_x_rt", "forward_x_rt_cpu", "stage_loop_x_rt", "stage_x_rt", "stage_x_rt_cpu")
    runs: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.repeats):  # interleaved, so both see the same machine load
        wall, cpu = pure_forward(bundle.model, dataset, batches)
        runs["forward_x_rt"].append(audio_s / wall)
        runs["forward_x_rt_cpu"].append(audio_s / cpu)
        wall, cpu, summary = run_stage(cfg)
        runs["stage_loop_x_rt"].append(summary["x_realtime"])
        runs["stage_x_rt"].append(audio_s / wall)
        runs["stage_x_rt_cpu"].append(audio_s / cpu)
    med = {name: statistics.median(v) for name, v in runs.items()}
    results = {
        "exp_dir": str(paths.root), "threads": args.threads, "cpu_count": os.cpu_count(),
        "shared_machine": True, "teacher_params": params,
        "vocab_size": len(bundle.tokenizer), "audio_hours": audio_s / 3600, "k": summary["k"], **med,
        "stage_vs_forward_wall": med["stage_loop_x_rt"] / med["forward_x_rt"],
        "stage_vs_forward_cpu": med["stage_x_rt_cpu"] / med["forward_x_rt_cpu"],
        "runs": runs, "stage_summary": summary,
    }
    with tempfile.TemporaryDirectory(prefix="bench_cache_") as tmp:
        items = sorted(range(len(dataset)), key=lambda i: dataset.utts[i].id)[: args.size_utts]
        results["bytes_demo"] = bytes_real_teacher(bundle, dataset, items, cfg.cache.max_frames, Path(tmp))
        results["bytes_bpe500"] = bytes_synthetic(BPE_VOCAB, 20000, Path(tmp))
    results["read"] = read_speed(paths.cache_dir(default_cache(cfg)[1].name, "train"), args.repeats)

    print()
    def row(label, name, ref=None):
        line = f"{label:<44}{med[name]:8.1f} x RT   runs {', '.join(f'{x:.1f}' for x in runs[name])}"
        print(line + (f"   = {100 * med[name] / med[ref]:.0f} % of (a)" if ref else ""))

    print("wall clock (what a user waits; noisy on a shared machine):")
    row("(a) teacher forward only", "forward_x_rt")
    row(f"(b) cache stage, shard loop (k={summary['k']})", "stage_loop_x_rt", "forward_x_rt")
    row("    cache stage, whole call", "stage_x_rt", "forward_x_rt")
    print("CPU time of the process (per core; robust to other jobs):")
    row("(a) teacher forward only", "forward_x_rt_cpu")
    row("(b) cache stage, whole call", "stage_x_rt_cpu", "forward_x_rt_cpu")
    print("    target: (b) >= 90 % of (a)")
    print()
    v = len(bundle.tokenizer)
    print(f"(c) {'k':>5}{f'B/frame V={v}':>14}{'/ fp32 full':>13}{'rest-mass err max':>19}"
          f"{f'B/frame V={BPE_VOCAB}':>16}{'/ fp32 full':>13}")
    for k in KS:
        d, s = results["bytes_demo"][str(k or "full")], results["bytes_bpe500"][str(k or "full")]
        d["ratio_to_fp32_full"] = d["bytes_per_frame"] / (4 * v)
        s["ratio_to_fp32_full"] = s["bytes_per_frame"] / (4 * BPE_VOCAB)
        print(f"    {str(k or 'full'):>5}{d['bytes_per_frame']:>14.1f}{d['ratio_to_fp32_full']:>12.1%}"
              f"{d['rest_mass_abs_err_max']:>19.1e}{s['bytes_per_frame']:>16.1f}{s['ratio_to_fp32_full']:>12.1%}")
    print(f"    full fp32 = {4 * v} B/frame (V={v}), {4 * BPE_VOCAB} B/frame (V={BPE_VOCAB}); values fp16, "
          "ids uint8 (V <= 256) else uint16, rest mass derived (0 B)")
    r = results["read"]
    print()
    print(f"(d) PosteriorCache random reads: {r['frames_per_s'] / 1e6:.2f} M frames/s, "
          f"{r['utts_per_s']:.0f} utt/s ({r['frames']} frames, {r['utterances']} utts, warm page cache); "
          f"open + verify {r['open_verify_s']:.3f} s")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"# wrote {args.json}")


if __name__ == "__main__":
    main()
