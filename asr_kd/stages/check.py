"""Stage ``check``: a pre-flight check: whether distillation can pay in this run, and what the rest
of the run will cost, from what ``exp_dir`` holds so far.

Reads:  ``models/teacher/train_log.jsonl`` and ``models/<baseline>/train_log.jsonl`` (last dev WER),
        ``decode/<baseline>/<set>.jsonl`` (summary: ``symbol_delay_ms``), ``data/<split>.jsonl``,
        ``cache/<name>/<split>/index.json`` and shards, ``stamps/`` (what is up to date); for the
        CTC-only probe, ``features/``, ``data/tokens.txt``.
Writes: ``check.json`` (the facts on the screen, machine-readable). Nothing else: the probe trains
        in a temporary folder, and no stamp or fingerprint changes.
Run:    ``asr-kd stage=check [recipe=NAME] [exp_dir=PATH] [check.probe_steps=200]``; ``stage=all``
        runs it first and goes on whatever it finds (a failure of the check is one logged line).

What it reports, each with a warning naming the fix where one applies (settings: ``check`` in
conf/config.yaml):

1. the teacher's dev WER against the CTC-only baseline's (its training log, or a probe: the
   baseline trained ``check.probe_steps`` steps with CTC); the teacher must be ``check.margin``
   better, relative, or distilling it cannot pay;
2. the teacher-to-student emission offset in student frames (the baseline's mean symbol delay,
   asr_kd.decoding.latency.frame_offset) against each frame-level objective's ``shift_frames`` and
   ``delay_window``;
3. the untranscribed audio (``data/unlabeled.jsonl``) beside the transcribed, and who trains on it;
4. each teacher cache of the plan: up to date or not, utterances held of those it needs;
5. the projected wall time of every unit not up to date: training units from steps timed here on
   random features (:func:`seconds_per_step`), the others as ``fixed + per hour`` of the audio they
   read (``check.rates``, measured from the stamps of the demo and smoke runs).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import DictConfig

from asr_kd.config import instantiate, to_dict
from asr_kd.data.dataset import Batch, UtteranceDataset
from asr_kd.data.manifest import read_manifest
from asr_kd.decoding.latency import frame_offset
from asr_kd.distill.cache import missing_shards, read_index
from asr_kd.distill.objectives import CTCOnly
from asr_kd.paths import ExpPaths
from asr_kd.scoring.target import last_dev_wer
from asr_kd.stages.base import ModelToFit, exp_paths
from asr_kd.stages.plan import Plan, System
from asr_kd.training.distributed import resolve_device
from asr_kd.training.loop import Checkpointer, SpecAugment, TrainConfig, make_optimizer, train, train_step
from asr_kd.utils import fingerprint, read_json, read_jsonl, write_json

__all__ = ["run", "units", "seconds_per_step"]

log = logging.getLogger(__name__)

#: Untimed training steps before the timed ones (allocator, first-call kernels).
WARMUP_STEPS = 2


def run(cfg: DictConfig) -> dict:
    """Print the check's screen, write ``check.json``; returns its content. Each part that fails is
    reported as failed (one logged line) and the others go on."""
    plan, paths = Plan(cfg), exp_paths(cfg)
    settings = cfg.check
    facts: dict = {"exp_dir": str(paths.root)}
    facts["teacher_vs_student"] = _guarded("teacher vs student", teacher_vs_student, cfg, plan, paths,
                                           settings.margin, settings.probe_steps)
    better = facts["teacher_vs_student"].get("clearly_better")
    facts["offset"] = _guarded("emission offset", emission_offset, cfg, plan, paths)
    facts["untranscribed"] = _guarded("untranscribed audio", untranscribed, plan, paths, better)
    facts["caches"] = _guarded("cache coverage", cache_coverage, plan, paths)
    facts["projection"] = _guarded("projection", projection, cfg, plan, paths)
    parts = [part for part in facts.values() if isinstance(part, dict)]
    facts["warnings"] = [w for part in parts for w in part.get("warnings", [])]
    write_json(paths.root / "check.json", facts)
    print(render(facts), flush=True)
    log.info("check: %d warning(s); written to %s", len(facts["warnings"]), paths.root / "check.json")
    return facts


def _guarded(what: str, part, *args) -> dict:
    """``part(*args)``, or ``{"error": ...}`` after one logged line if it fails: the check never stops."""
    try:
        return part(*args)
    except Exception as e:  # noqa: BLE001 - advice only: any failure is reported, never raised
        log.warning("check: %s failed (%s: %s); skipped", what, type(e).__name__, e)
        return {"error": f"{type(e).__name__}: {e}"}


# ---- 1. teacher vs student ------------------------------------------------------------------------


def baseline(plan: Plan) -> System:
    """The CTC-only system the teacher is judged against: the first baseline, else the first system
    (probed with CTC)."""
    names = plan.baselines or list(plan.systems)
    return plan.systems[names[0]]


def teacher_vs_student(cfg: DictConfig, plan: Plan, paths: ExpPaths, margin: float, probe_steps: int) -> dict:
    """The teacher's and the CTC-only student's dev WER and whether the teacher is ``margin`` better
    (relative); the student is probed (:func:`probe`) when its baseline has not trained yet."""
    student = baseline(plan)
    out: dict = {"teacher_wer": None, "student": student.name, "student_wer": None, "margin": margin,
                 "clearly_better": None, "warnings": []}
    teacher = last_dev_wer(paths.model_dir("teacher") / "train_log.jsonl")
    if teacher is None:
        return {**out, "note": "the teacher has no dev WER yet (not trained here): run stage=teacher"}
    out.update(teacher_wer=teacher[0], teacher_steps=teacher[1])
    trained = last_dev_wer(paths.model_dir(student.name) / "train_log.jsonl")
    if trained is not None:
        out.update(student_wer=trained[0], student_steps=trained[1], probe=False)
    elif probe_steps > 0 and paths.features("train").exists():
        out.update(student_wer=probe(cfg, paths, student, probe_steps), student_steps=probe_steps, probe=True)
    else:
        return {**out, "note": f"{student.name} has no dev WER yet and no probe ran (check.probe_steps, "
                               "features): run stage=features first"}
    gain = 1 - out["teacher_wer"] / out["student_wer"] if out["student_wer"] > 0 else -math.inf
    out.update(relative_gain=gain, clearly_better=gain >= margin)
    if not out["clearly_better"]:
        out["warnings"].append("the teacher is not better than the student on dev: a stronger teacher or "
                               "untranscribed audio is needed")
    return out


def probe(cfg: DictConfig, paths: ExpPaths, system: System, steps: int) -> float:
    """Dev WER of ``system``'s student trained ``steps`` steps with CTC on ``train`` (its training
    settings otherwise; no checkpoints; in a temporary folder): a cheap floor for the baseline."""
    warmup = min(system.train["warmup_steps"], steps // 2)
    train_cfg = dataclasses.replace(system.train_config(), steps=steps, eval_every=steps, warmup_steps=warmup,
                                    checkpoint_every=0, checkpoint_minutes=0)
    fit = ModelToFit.build(paths, system.student["model"], train_cfg.seed)
    train_set = UtteranceDataset.from_exp(paths, "train", fit.cmvn, fit.tokenizer)
    dev = UtteranceDataset.from_exp(paths, cfg.dev_set, fit.cmvn, fit.tokenizer)
    with tempfile.TemporaryDirectory(prefix="asr-kd-probe-") as folder:
        metrics = train(fit.model, CTCOnly(), train_set, dev, train_cfg, folder, name=f"probe {system.name}")
    return metrics["wer"]


# ---- 2. emission offset ---------------------------------------------------------------------------


def _student_frame_ms(cfg: DictConfig, system: System) -> float:
    """Milliseconds per output frame of ``system``'s student (its subsampling x the feature shift)."""
    frontend = cfg.features.frontend
    model = instantiate(system.student["model"], vocab_size=2, input_dim=frontend.num_mel_bins)
    return model.subsampling_factor * frontend.frame_shift_ms


def _delay_summary(paths: ExpPaths, system: str, sets: list[str]) -> tuple[str, float] | None:
    """``(set, mean symbol delay in ms)`` of the first decode of ``system`` in ``sets`` that measured one."""
    for name in sets:
        path = paths.decode(system, name)
        if path.exists():
            summary = read_jsonl(path)[-1].get("summary", {})
            if summary.get("symbol_delay_ms") is not None:
                return name, summary["symbol_delay_ms"]
    return None


def emission_offset(cfg: DictConfig, plan: Plan, paths: ExpPaths) -> dict:
    """The CTC-only student's emission offset from the teacher in its own frames, and for each system
    whose objective distils frame by frame (a ``shift_frames``, alpha > 0) whether its targets'
    shift (within ``delay_window``) covers it."""
    student = baseline(plan)
    frame_ms = _student_frame_ms(cfg, student)
    out: dict = {"student": student.name, "frame_ms": frame_ms, "offset_frames": None, "systems": {},
                 "warnings": []}
    measured = _delay_summary(paths, student.name, [cfg.dev_set, *cfg.test_sets])
    if measured is None:
        return {**out, "note": f"not measured yet: no decode of {student.name} with symbol delays "
                               "(stage=decode)"}
    offset = frame_offset([measured[1]], [0.0], frame_ms)  # the teacher's delay against itself is 0
    out.update(test_set=measured[0], symbol_delay_ms=measured[1], offset_frames=offset)
    for name, system in plan.systems.items():
        objective = system.objective
        if "shift_frames" not in objective or not (objective.get("alpha") or objective.get("alpha_final")):
            continue  # no frame-level teacher targets to align
        shift, window = objective["shift_frames"], objective.get("delay_window") or 0
        aligned = abs(offset - shift) <= window
        out["systems"][name] = {"shift_frames": shift, "delay_window": window, "aligned": aligned}
        if not aligned:
            node = cfg.systems.get(name) or {}
            key = f"systems.{name}.objective" if node.get("objective") is not None else "distill"
            chunk = system.student["model"].get("chunk_frames")
            who = f"a {chunk * frame_ms:g} ms student" if chunk else "this student"
            out["warnings"].append(
                f"targets not aligned for {who}: measured offset {offset} frames, {name} shifts {shift} "
                f"(set {key}.shift_frames={offset} or {key}.delay_window={abs(offset - shift)})")
    return out


# ---- 3. untranscribed audio -----------------------------------------------------------------------


def _audio(paths: ExpPaths, split: str) -> dict | None:
    """Utterances and hours of a prepared split; None before prepare."""
    path = paths.manifest(split)
    if not path.exists():
        return None
    utts = read_manifest(path)
    return {"utterances": len(utts), "hours": sum(u.duration for u in utts) / 3600}


def untranscribed(plan: Plan, paths: ExpPaths, clearly_better: bool | None) -> dict:
    """The untranscribed audio beside the transcribed and the systems that train on it; a warning when
    none is used while the teacher is not clearly better (then it is what distillation has to offer)."""
    labelled = _audio(paths, "train")
    if labelled is None:
        return {"note": "data not prepared yet (stage=prepare)", "warnings": []}
    extra = _audio(paths, "unlabeled") or {"utterances": 0, "hours": 0.0}
    users = [name for name, s in plan.systems.items() if "unlabeled" in s.sources]
    out = {"unlabeled": extra, "train": labelled, "systems": users, "warnings": []}
    if clearly_better is False and not (extra["utterances"] and users):
        fix = ("add some: data.unlabeled=[FOLDER]" if not extra["utterances"] else
               "no system trains on it: give one splits: [train, unlabeled]")
        out["warnings"].append(f"no untranscribed audio used while the teacher is not clearly better: {fix}")
    return out


# ---- 4. cache coverage ----------------------------------------------------------------------------


def up_to_date(plan: Plan, paths: ExpPaths, unit: str) -> bool:
    """Whether ``unit``'s stamp records the fingerprint the config gives it now."""
    stamp = paths.stamp(unit)
    return stamp.exists() and read_json(stamp).get("fingerprint") == plan.fingerprint(unit)


def cache_coverage(plan: Plan, paths: ExpPaths) -> dict:
    """Per cache unit of the plan: up to date or not, the utterances its finished shards hold and those
    it needs (its index's, else the split's manifest's)."""
    out: dict = {"units": {}, "warnings": []}
    for unit in plan.cache_units():
        _, name, split = unit.split("/")
        folder = paths.cache_dir(name, split)
        needed = _audio(paths, split)
        held, expected = 0, needed["utterances"] if needed else None
        if (folder / "index.json").exists():
            index = read_index(folder)
            expected = index["utterances"]
            held = expected - sum(index["shards"][s]["utts"] for s in missing_shards(folder, index))
        done = up_to_date(plan, paths, unit)
        out["units"][unit] = {"done": done, "utterances": held, "expected": expected}
        if not done:
            of = "?" if expected is None else f"{expected:,}"
            out["warnings"].append(f"{unit}: {held:,} of {of} utterances: run stage=cache")
    return out


# ---- 5. projected wall time -----------------------------------------------------------------------


def units(plan: Plan) -> list[str]:
    """Every unit of work of the plan, in pipeline order."""
    return ["prepare", "features", "teacher", *plan.fold_units, *plan.cache_units(),
            *(f"student/{name}" for name in plan.systems), *(f"decode/{name}" for name in plan.decoded),
            *(f"export/{name}" for name in plan.exported), "score"]


def _random_batch(frames: int, max_frames: int, input_dim: int, vocab_size: int) -> Batch:
    """A full training batch of ``frames``-frame utterances of random features and labels."""
    size = max(1, max_frames // frames)
    lengths = torch.full((size,), frames)
    tokens = max(1, frames // 10)  # ~10 characters a second at 10 ms frames
    return Batch(ids=[str(i) for i in range(size)], feats=torch.randn(size, frames, input_dim),
                 lengths=lengths, targets=torch.randint(1, vocab_size, (size, tokens)),
                 target_lengths=torch.full((size,), tokens),
                 labelled=torch.ones(size, dtype=torch.bool), pseudo=torch.zeros(size, dtype=torch.bool))


def seconds_per_step(model_cfg: dict, train_cfg: TrainConfig, frames: int, input_dim: int, vocab_size: int,
                     steps: int) -> tuple[float, float]:
    """``(seconds per training step, seconds per frame of a dev forward)`` of the model ``model_cfg``
    on this machine: ``steps`` real CTC training steps (after :data:`WARMUP_STEPS`) at ``train_cfg``'s
    ``max_frames``, device and threads, on random ``frames``-frame utterances."""
    device = resolve_device(train_cfg.device)
    threads = torch.get_num_threads()
    torch.set_num_threads(train_cfg.threads or len(os.sched_getaffinity(0)))
    try:
        model = instantiate(model_cfg, input_dim=input_dim, vocab_size=vocab_size).to(device).train()
        optimizer = make_optimizer(model, train_cfg, device)
        augment = SpecAugment(**train_cfg.spec_augment) if train_cfg.spec_augment is not None else None
        batch = _random_batch(frames, train_cfg.max_frames, input_dim, vocab_size).to(device)
        for step in range(WARMUP_STEPS + steps):
            if step == WARMUP_STEPS:
                start = time.perf_counter()
            train_step(model, CTCOnly(), batch, optimizer, train_cfg, step, augment)
        per_step = (time.perf_counter() - start) / steps
        model.eval()
        with torch.no_grad():
            start = time.perf_counter()
            model(batch.feats, batch.lengths)
            per_frame = (time.perf_counter() - start) / int(batch.lengths.sum())
        return per_step, per_frame
    finally:
        torch.set_num_threads(threads)


class _Audio:
    """Hours of audio of each split: the manifest's after prepare; before it, the corpus's planned
    counts (``data.num_<split>``, ``num_test`` per test set; no ``num_unlabeled``: none) at
    ``check.utt_s`` seconds each."""

    def __init__(self, cfg: DictConfig, paths: ExpPaths):
        self.cfg, self.paths = cfg, paths

    def hours(self, split: str) -> float:
        found = _audio(self.paths, split)
        if found is not None:
            return found["hours"]
        test = split in self.cfg.test_sets
        key = "num_test" if test else "num_dev" if split == self.cfg.dev_set else f"num_{split}"
        count = self.cfg.data.get(key, 0 if split == "unlabeled" else None)  # no unlabeled: none
        if count is None:
            raise ValueError(f"{split}: not prepared yet and data.{key} does not say its size")
        return count * self.cfg.check.utt_s / 3600

    def frames(self, split: str) -> int:
        """Mean feature frames of one utterance of ``split``."""
        found = _audio(self.paths, split)
        seconds = found["hours"] * 3600 / found["utterances"] if found else self.cfg.check.utt_s
        return max(1, round(seconds * 1000 / self.cfg.features.frontend.frame_shift_ms))


def projection(cfg: DictConfig, plan: Plan, paths: ExpPaths) -> dict:
    """Projected seconds of every unit whose stamp is not up to date, and their total."""
    audio, rates = _Audio(cfg, paths), to_dict(cfg.check.rates)
    frontend = cfg.features.frontend
    vocab = len(paths.tokens.read_text(encoding="utf-8").splitlines()) if paths.tokens.exists() else 30
    sources = {split for system in plan.systems.values() for split in system.sources}
    every = ["train", cfg.dev_set, *cfg.test_sets, *(["unlabeled"] if "unlabeled" in sources else [])]
    test_hours = sum(audio.hours(s) for s in cfg.test_sets)
    benches: dict[str, tuple[float, float]] = {}

    def rate(kind: str, hours: float) -> tuple[float, str]:
        fixed, per_hour = rates[kind]
        return fixed + per_hour * hours, f"{fixed:g} s + {per_hour:g} s/h x {hours:.3f} h " \
            f"(check.rates.{kind})"

    def training(model: dict, train_cfg: TrainConfig, folder: Path) -> tuple[float, str]:
        key = fingerprint([model, dataclasses.asdict(train_cfg)])
        if key not in benches:
            benches[key] = seconds_per_step(model, train_cfg, audio.frames("train"), frontend.num_mel_bins,
                                            vocab, cfg.check.bench_steps)
        per_step, per_frame = benches[key]
        done = Checkpointer.newest_step(folder)
        steps = max(train_cfg.steps - done, 0)
        evals = math.ceil(train_cfg.steps / train_cfg.eval_every) - done // train_cfg.eval_every
        eval_s = audio.hours(cfg.dev_set) * 3.6e6 / frontend.frame_shift_ms * per_frame
        fixed = rates["train"][0]  # loading, building and saving
        resumed = f" (resumes at step {done:,})" if done else ""
        return (fixed + steps * per_step + evals * eval_s,
                f"{steps:,} steps{resumed} x {per_step:.4f} s (timed here) + {evals} dev evals x "
                f"{eval_s:.1f} s + {fixed:g} s (check.rates.train)")

    def estimate(unit: str) -> tuple[float, str]:
        kind, _, rest = unit.partition("/")
        if kind == "prepare":
            return rate("prepare", sum(audio.hours(s) for s in every))
        if kind == "features":
            return rate("features", sum(audio.hours(s) for s in every))
        if kind == "teacher":
            settings = plan.settings(unit)
            if "train" not in settings:  # a pretrained or given checkpoint: described, not trained
                return rate("teacher_import", 0.0)
            return training(settings.get("model") or settings["teacher"]["model"],
                            TrainConfig(**{**plan.teacher_train, **settings["train"]}),
                            paths.model_dir(unit.replace("/", "_")))
        if kind == "cache":
            return rate("cache", audio.hours(unit.split("/")[2]))
        if kind == "student":
            system = plan.systems[rest]
            return training(system.student["model"], system.train_config(), paths.model_dir(rest))
        return rate(kind, test_hours)  # decode, export, score: the test sets

    remaining = {}
    for unit in units(plan):
        if not up_to_date(plan, paths, unit):
            seconds, how = estimate(unit)
            remaining[unit] = {"seconds": round(seconds, 1), "how": how}
    return {"units": remaining, "total_s": round(sum(u["seconds"] for u in remaining.values()), 1),
            "done": [u for u in units(plan) if u not in remaining], "warnings": []}


# ---- the screen -----------------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "?" if value is None else f"{100 * value:.1f}%"


def render(facts: dict) -> str:
    """The one screen of the check, from ``facts`` (what check.json holds)."""
    lines = [f"asr-kd pre-flight check of {facts['exp_dir']}"]

    def part(title: str, key: str, body) -> None:
        lines.append(f"\n{title}")
        section = facts[key]
        if "error" in section:
            lines.append(f"  could not check: {section['error']}")
            return
        lines.extend(f"  {line}" for line in ([section["note"]] if "note" in section else body(section)))
        lines.extend(f"  WARNING: {w}" for w in section.get("warnings", []))

    def duel(s: dict) -> list[str]:
        how = f"a probe at {s['student_steps']:,} steps" if s["probe"] else f"{s['student_steps']:,} steps"
        return [f"teacher {_pct(s['teacher_wer'])} ({s['teacher_steps']:,} steps), {s['student']} "
                f"{_pct(s['student_wer'])} ({how}): the teacher is {_pct(s['relative_gain'])} better, "
                f"relative (check.margin: {_pct(s['margin'])})"]

    def offset(s: dict) -> list[str]:
        rows = [f"{s['student']} on {s['test_set']}: mean symbol delay {s['symbol_delay_ms']:.0f} ms = "
                f"{s['offset_frames']} frame(s) of {s['frame_ms']:g} ms"]
        rows += [f"{name}: shift_frames {v['shift_frames']}, delay_window {v['delay_window']}: "
                 f"{'aligned' if v['aligned'] else 'NOT aligned'}" for name, v in s["systems"].items()]
        return rows if s["systems"] else [*rows, "no system distils frame by frame"]

    def share(s: dict) -> list[str]:
        extra, train_ = s["unlabeled"], s["train"]
        return [f"{extra['utterances']:,} untranscribed utterances ({extra['hours']:.2f} h) beside "
                f"{train_['utterances']:,} transcribed ({train_['hours']:.2f} h); trained on by "
                f"{', '.join(s['systems']) or 'no system'}"]

    def caches(s: dict) -> list[str]:
        return [f"{unit}: {'up to date' if v['done'] else 'not done'}, {v['utterances']:,} of "
                f"{'?' if v['expected'] is None else format(v['expected'], ',')} utterances"
                for unit, v in s["units"].items() if v["done"]] or ["none up to date"]

    def table(s: dict) -> list[str]:
        rows = [f"{unit:<32}{v['seconds']:>9,.0f}  {v['how']}" for unit, v in s["units"].items()]
        return [f"{'unit':<32}{'seconds':>9}", *rows, f"{'total':<32}{s['total_s']:>9,.0f}"]

    part("Teacher vs CTC-only student on dev", "teacher_vs_student", duel)
    part("Teacher-student emission offset", "offset", offset)
    part("Untranscribed audio", "untranscribed", share)
    part("Teacher caches", "caches", caches)
    part("Projected wall time of the remaining units (this machine)", "projection", table)
    lines.append(f"\n{len(facts['warnings'])} warning(s); details in {facts['exp_dir']}/check.json")
    return "\n".join(lines)
