"""Training throughput of the teacher and the student(s), and whether the data loader keeps up.

For each system it measures, on an experiment directory that has run ``prepare`` and ``features``
(and ``cache``, for the distilling student):

* **loader**  ``UtteranceDataset`` + ``DurationBatchSampler`` + ``DataLoader`` exactly as the
  training loop builds them (``asr_kd.training.loop._loader``, the config's ``num_workers``),
  iterated with no model: batches/s and seconds of audio delivered per second (x real time);
* **step**    forward + loss + backward + clip + AdamW step on batches already in memory (the body
  of ``asr_kd.training.loop.train``, with the package's models, SpecAugment and objectives):
  x real time and seconds per step;
* **train()** the real loop, ``asr_kd.training.loop.train``, for the same number of steps, loader
  included: its own ``x_realtime`` metric. ``train() / step`` near 100 % and ``loader / step`` well
  above 1 mean the model never waits on the loader.

Models come from the demo configs (``conf/teacher/conformer_small.yaml``,
``conf/student/emformer_small.yaml``) composed with Hydra's compose API; ``--override`` adds
command-line style overrides (e.g. ``--override recipe=smoke``). Systems: ``teacher`` (CTC),
``student_ctc`` (alpha = 0) and ``student_kd`` (``distill.alpha``, top-k targets from
``<exp_dir>/cache``; skipped when there is no cache).

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_train.py --exp-dir /tmp/exp_bench [--steps 20] [--repeats 3]
        [--threads 1] [--systems teacher,student_ctc,student_kd] [--json PATH]

Steps run where the training loop would (``train.*.device``, default a GPU when torch sees one,
with ``train.*.precision``); on a GPU ``--override train.teacher.max_frames=60000`` times
LibriSpeech-size batches. Figures are medians of ``--repeats`` runs. Prints a table and writes
``--json`` (default ``benchmarks/results/train.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import torch
from torch import nn

from asr_kd.config import instantiate, to_dict
from asr_kd.data.dataset import UtteranceDataset
from asr_kd.training.distributed import resolve_device
from asr_kd.training.loop import SpecAugment, TrainConfig, _loader, make_optimizer, train, train_step

REPO = Path(__file__).resolve().parent.parent
FRAME_SHIFT_S = 0.01  # the training loop's own audio-seconds arithmetic


def compose_config(exp_dir: Path, overrides: list[str]):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=[f"exp_dir={exp_dir}", *overrides])


def measure_loader(dataset: UtteranceDataset, cfg: TrainConfig, max_batches: int) -> dict:
    """Batches/s of the training loop's DataLoader alone (worker start-up excluded)."""
    loader = _loader(dataset, cfg.max_frames, cfg.num_workers, shuffle=True, seed=cfg.seed)
    it = iter(loader)
    next(it)  # worker start-up and the first prefetch
    start, batches, frames = time.perf_counter(), 0, 0
    for batch in it:
        batches += 1
        frames += int(batch.lengths.sum())
        if batches >= max_batches:
            break
    elapsed = time.perf_counter() - start
    del it, loader  # stop the workers
    return {
        "batches_per_s": batches / elapsed,
        "x_rt": frames * FRAME_SHIFT_S / elapsed,
        "batches": batches,
        "num_workers": cfg.num_workers,
    }


def measure_steps(model: nn.Module, objective, batches: list, cfg: TrainConfig, warmup: int) -> dict:
    """``train_step`` (the body of ``train``) on in-memory batches: what the optimisation steps alone cost.

    ``x_rt`` leaves the first ``warmup`` steps out (allocator and kernel warm-up); ``x_rt_all`` counts
    every step, to compare with ``train()`` over the same batches.
    """
    device = resolve_device(cfg.device)
    model.to(device)
    batches = [b.to(device) for b in batches]
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16")
    optimizer = make_optimizer(model, cfg, device)
    augment = SpecAugment(**cfg.spec_augment) if cfg.spec_augment is not None else None
    model.train()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times, cpu, audio = [], [], []
    for step, batch in enumerate(batches):
        start, start_cpu = time.perf_counter(), time.process_time()
        loss, _, _ = train_step(model, objective, batch, optimizer, cfg, step, augment, autocast)
        loss.item()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        audio.append(float(batch.lengths.sum()) * FRAME_SHIFT_S)
    return {
        "x_rt": sum(audio[warmup:]) / sum(times[warmup:]),
        "x_rt_all": sum(audio) / sum(times),
        "x_rt_cpu": sum(audio[warmup:]) / sum(cpu[warmup:]),
        "s_per_step": statistics.median(times[warmup:]),
        "steps_per_s": 1 / statistics.median(times[warmup:]),
        "device": str(device),
        **({"max_memory_gb": torch.cuda.max_memory_allocated(device) / 2**30} if device.type == "cuda"
           else {}),
    }


def measure_train(make_model, objective, dataset, cfg: TrainConfig, steps: int) -> dict:
    """``asr_kd.training.loop.train`` itself for ``steps`` steps; its logged x_realtime."""
    run_cfg = TrainConfig(**{**cfg.__dict__, "steps": steps, "eval_every": 10**9,
                             "warmup_steps": min(cfg.warmup_steps, steps)})
    with tempfile.TemporaryDirectory(prefix="bench_train_") as out:
        start = time.perf_counter()
        with contextlib.redirect_stderr(io.StringIO()):  # the loop's progress bar
            train(make_model(), objective, dataset, None, run_cfg, out, name="bench")
        wall = time.perf_counter() - start
        lines = (Path(out) / "train_log.jsonl").read_text().splitlines()
    return {"x_rt": json.loads(lines[-1])["x_realtime"], "wall_s": wall}


def systems(cfg, paths, names: list[str]):
    """``name -> (model factory, objective, dataset, TrainConfig)`` for the requested systems
    (``teacher`` or any system of the config's ``systems``)."""
    from asr_kd.data.vocabulary import load_tokenizer
    from asr_kd.distill.objectives import CTCOnly
    from asr_kd.distill.targets import CachedTargets
    from asr_kd.distill.teacher_cache import load_cache_teachers, open_cache
    from asr_kd.features.cmvn import GlobalCMVN
    from asr_kd.features.store import FeatureStore
    from asr_kd.stages.plan import Plan

    plan = Plan(cfg)
    tokenizer = load_tokenizer(paths.tokens)
    cmvn = GlobalCMVN.load(paths.cmvn)
    frontend = FeatureStore(paths.features("train")).frontend
    out = {}
    for name in names:
        if name == "teacher":
            model_config, objective = to_dict(cfg.teacher.model), CTCOnly()
            train_cfg, splits = TrainConfig(**plan.teacher_train), ("train",)
        else:
            system = plan.systems[name]
            model_config, objective = system.student["model"], system.build_objective()
            train_cfg, splits = system.train_config(), system.splits
        model_config = {**model_config, "input_dim": frontend["num_mel_bins"]}

        def make_model(model_config=model_config):
            return instantiate(model_config, vocab_size=len(tokenizer))

        targets = None
        if objective.needs_teacher:
            spec = plan.caches[system.cache]
            folders = [paths.cache_dir(spec.name, split) for split in system.sources]
            if not all((folder / "meta.json").exists() for folder in folders):
                print(f"# {name}: skipped, no cache in {folders[0]} (run stage=cache or bench_cache.py)")
                continue
            teachers = load_cache_teachers(cfg.teacher, paths, spec)
            caches = [open_cache(paths, spec, split, make_model().subsampling_factor,
                                 frontend["frame_shift_ms"], teachers) for split in system.sources]
            targets = CachedTargets(caches, pseudo_labels=objective.pseudo_labels)
            if train_cfg.spec_augment:  # as the student stage: no time warp with KD
                train_cfg.spec_augment = {**train_cfg.spec_augment, "time_warp": 0}
        dataset = UtteranceDataset.from_exp(paths, splits, cmvn, tokenizer, targets)
        out[name] = (make_model, objective, dataset, train_cfg, model_config)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--exp-dir", type=Path, required=True, help="experiment dir with features (and cache)")
    p.add_argument("--override", action="append", default=[], help="a Hydra override; repeatable")
    p.add_argument("--systems", default="teacher,student_ctc,student_kd")
    p.add_argument("--steps", type=int, default=20, help="optimisation steps per measurement")
    p.add_argument("--warmup", type=int, default=3, help="first steps left out of 'step xRT'")
    p.add_argument("--loader-batches", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads of the training process")
    p.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "train.json")
    args = p.parse_args()

    from asr_kd.stages.base import exp_paths

    torch.set_num_threads(args.threads)
    cfg = compose_config(args.exp_dir.absolute(), args.override)
    paths = exp_paths(cfg)
    if not paths.cmvn.exists():
        sys.exit(f"{paths.root}: no features; run `asr-kd stage=features exp_dir={paths.root}` first")
    print(f"# {paths.root}; torch threads {args.threads}; {os.cpu_count()} CPU cores visible, shared with "
          f"other jobs (medians of {args.repeats} runs, still noisy)")
    results = {"exp_dir": str(paths.root), "threads": args.threads, "cpu_count": os.cpu_count(),
               "shared_machine": True, "steps": args.steps, "repeats": args.repeats, "systems": {}}
    for name, (make_model, objective, dataset, tcfg, model_config) in systems(
        cfg, paths, args.systems.split(",")
    ).items():
        torch.manual_seed(0)
        in_process = TrainConfig(**{**tcfg.__dict__, "num_workers": 0})
        batches = []
        for batch in _loader(dataset, tcfg.max_frames, num_workers=0, shuffle=True, seed=tcfg.seed):
            batches.append(batch)
            if len(batches) == args.steps:
                break
        runs = {"loader": [], "loader_in_process": [], "step": [], "train": []}
        for _ in range(args.repeats):
            runs["loader"].append(measure_loader(dataset, tcfg, args.loader_batches))
            runs["loader_in_process"].append(measure_loader(dataset, in_process, args.loader_batches))
            runs["step"].append(measure_steps(make_model(), objective, batches, tcfg, args.warmup))
            runs["train"].append(measure_train(make_model, objective, dataset, tcfg, args.steps))
        med = {k: {m: statistics.median(r[m] for r in v) for m in v[0] if isinstance(v[0][m], float)}
               for k, v in runs.items()}
        params = sum(p.numel() for p in make_model().parameters())
        audio_per_batch = statistics.mean(float(b.lengths.sum()) * FRAME_SHIFT_S for b in batches)
        results["systems"][name] = {
            "model": model_config["_target_"], "params": params, "max_frames": tcfg.max_frames,
            "loader_workers": tcfg.num_workers, "audio_s_per_batch": audio_per_batch,
            "median": med, "runs": runs,
            "loader_headroom": med["loader"]["x_rt"] / med["step"]["x_rt"],
            "train_vs_step": med["train"]["x_rt"] / med["step"]["x_rt_all"],
        }

    print()
    head = (f"{'system':<13}{'params':>8}{'s/step':>8}{'step xRT':>10}{'train() xRT':>13}{'train/step':>11}"
            f"{'loader b/s':>12}{'loader xRT':>12}{'(0 workers)':>12}{'headroom':>10}")
    print(head)
    for name, r in results["systems"].items():
        m = r["median"]
        print(f"{name:<13}{r['params'] / 1e6:>7.2f}M{m['step']['s_per_step']:>8.2f}{m['step']['x_rt']:>10.1f}"
              f"{m['train']['x_rt']:>13.1f}{100 * r['train_vs_step']:>10.0f}%"
              f"{m['loader']['batches_per_s']:>12.1f}{m['loader']['x_rt']:>12.0f}"
              f"{m['loader_in_process']['x_rt']:>12.0f}{r['loader_headroom']:>9.0f}x")
    print("# xRT = seconds of audio per second of wall clock. step: in-memory batches, first --warmup steps"
          " left out;\n# train/step: train() over the same batches vs the steps alone, warm-up included in"
          " both;\n# headroom = loader xRT (config's workers) / step xRT")
    if any(r["loader_headroom"] < 2 or not math.isfinite(r["loader_headroom"])
           for r in results["systems"].values()):
        print("# WARNING: the loader delivers less than 2x what a step consumes")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"# wrote {args.json}")


if __name__ == "__main__":
    main()
