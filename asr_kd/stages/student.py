"""Stage ``student``: train every system of the run (``systems``: CTC only, distilled variants...).

Reads:  ``features/<split>`` of each system's ``splits`` and ``dev_set``, ``features/cmvn.json``,
        ``data/tokens.txt``; for systems whose objective reads the teacher, their cache
        ``cache/<name>/<split>`` (checked against the teacher(s) that make it, the features, the
        split's views and the student's frame rate) and those teachers (``models/teacher``, a
        pretrained one: asr_kd.models.adapters, or the fold teachers of a crossfit/ensemble cache).
Writes: ``models/<system>/model.pt`` (bundle) for each system, ``train_log.jsonl``, ``tb/``; for an
        objective with ``pseudo_lm_weight``, ``models/<system>/pseudo_lm/`` (the word LM and lexicon
        of the train transcripts its pseudo-labels are decoded with, settings of ``decode.lm``).
Run:    ``asr-kd stage=student [distill.temperature=2] [study=kd_demo] [student=NAME]``

A system is a config (asr_kd.stages.plan): its objective (``conf/distill/*``: ``ctc_only``, ``kd``,
...), its student, its training settings and its cache. Each system has its own fingerprint, so a
system already trained for the same settings and inputs is skipped: adding one system to a study
trains that system only.

With a budget (``target.size_mb=0.5 target.latency_ms=400``, asr_kd.scoring.target), the candidate
systems ``cand_<student>_c<chunk>`` are trained after the others, in the plan's order; each drop before
training is logged with its reason, and with ``target.early_stop`` a candidate whose first dev WER is
that many times the best earlier candidate's at the same step stops there (``"stopped"`` in its
``train_log.jsonl``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from omegaconf import DictConfig

from asr_kd.data.dataset import UtteranceDataset
from asr_kd.data.manifest import read_manifest
from asr_kd.data.tokenizer import Tokenizer
from asr_kd.decoding.lm import lm_searches
from asr_kd.distill.targets import CachedTargets
from asr_kd.distill.teacher_cache import load_cache_teachers, open_cache
from asr_kd.errors import ConfigError
from asr_kd.models.bundle import count_parameters
from asr_kd.paths import ExpPaths
from asr_kd.scoring.target import dev_wers, hopeless
from asr_kd.stages.base import ModelToFit, StageStamp, fit_and_save
from asr_kd.stages.plan import Plan, System
from asr_kd.utils import read_jsonl

log = logging.getLogger(__name__)


def train_system(cfg: DictConfig, plan: Plan, system: System) -> None:
    stamp = StageStamp(cfg, f"student/{system.name}", plan)
    if stamp.is_done():
        return
    paths = stamp.paths
    train_cfg = system.train_config()
    objective = system.build_objective()
    fit = ModelToFit.build(paths, system.student["model"], train_cfg.seed)
    model, tokenizer = fit.model, fit.tokenizer
    log.info("%s: %.2fM parameters, objective %s", system.name, count_parameters(model) / 1e6, objective)
    teacher = None
    if objective.needs_teacher:
        spec = plan.caches[system.cache]
        teachers = load_cache_teachers(cfg.teacher, paths, spec)  # once for all its splits
        caches = [open_cache(paths, spec, split, model.subsampling_factor, fit.frontend["frame_shift_ms"],
                             teachers) for split in system.sources]
        teacher = CachedTargets(caches, pseudo_labels=objective.pseudo_labels)
        if train_cfg.spec_augment and train_cfg.spec_augment.get("time_warp", 0) > 0:
            log.warning("%s: time warping moves frames away from their cached teacher targets; "
                        "it is off for this distilled system (masks stay on)", system.name)
            train_cfg.spec_augment = {**train_cfg.spec_augment, "time_warp": 0}
    train_set = UtteranceDataset.from_exp(paths, system.splits, fit.cmvn, tokenizer, teacher, system.labelled,
                                          keep_untranscribed=objective.needs_teacher)
    lm_weight = objective.pseudo_lm_weight
    if objective.pseudo_labels != "none":
        log.info("%s: CTC targets of %s utterances are the teacher's 1-best from the cache (%s)", system.name,
                 "all" if objective.pseudo_labels == "all" else "untranscribed",
                 "greedy" if lm_weight is None else f"beam search, LM weight {lm_weight:g}")
        if lm_weight is not None:
            decode_pseudo_labels(cfg, paths, system, teacher, train_set, tokenizer, lm_weight)
    fit_and_save(stamp, fit, objective, train_set, cfg.dev_set, train_cfg, system.name,
                 {"system": system.config}, stop=early_stop(plan, paths, system.name))


StopRule = Callable[[int, dict[str, float]], str | None]


def early_stop(plan: Plan, paths: ExpPaths, name: str) -> StopRule | None:
    """For a target candidate (``target.early_stop`` set): stop at its first dev evaluation when its
    WER exceeds ``early_stop`` x the best of the other candidates' logged at the same step."""
    ratio = plan.target.early_stop if plan.target is not None else None
    if ratio is None or name not in {c.name for c in plan.candidates}:
        return None
    others = [c.name for c in plan.candidates if c.dropped is None and c.name != name]
    evaluations = []

    def stop(step: int, metrics: dict[str, float]) -> str | None:
        evaluations.append(step)
        if len(evaluations) > 1:  # the first evaluation only
            return None
        logs = {o: p for o in others if (p := paths.model_dir(o) / "train_log.jsonl").exists()}
        at_step = {o: wer for o, p in logs.items() if (wer := dev_wers(read_jsonl(p)).get(step)) is not None}
        best = min(at_step, key=at_step.get, default=None)
        if best is None or not hopeless(metrics["wer"], at_step[best], ratio):
            return None
        return (f"dev WER {100 * metrics['wer']:.2f} % at step {step} > {ratio:g} x {best}'s "
                f"{100 * at_step[best]:.2f} %")

    return stop


def decode_pseudo_labels(cfg: DictConfig, paths: ExpPaths, system: System, teacher: CachedTargets,
                         train_set: UtteranceDataset, tokenizer: Tokenizer, lm_weight: float) -> None:
    """The teacher's 1-bests of ``train_set``'s pseudo-labelled utterances by CTC beam search on its
    cached posteriors with the word LM of the train transcripts (``decode.lm``'s order, discount,
    beam; written to ``models/<system>/pseudo_lm/``), instead of greedy."""
    lm_cfg = cfg.decode.get("lm")
    if lm_cfg is None:
        raise ConfigError(f"{system.name}: pseudo_lm_weight decodes pseudo-labels with the word LM of "
                          f"decode.lm, which this config lacks (decode=beam_lm has it)")
    texts = [u.text for u in read_manifest(paths.manifest("train")) if u.text]
    make_search, _ = lm_searches(texts, tokenizer, lm_cfg, paths.model_dir(system.name) / "pseudo_lm")
    search = make_search(lm_weight, 0.0)  # no blank penalty: the teacher's posteriors as they are
    utterances = [(u.id, train_set.audio_sha(i), u.text is not None) for i, u in enumerate(train_set.utts)]
    count = teacher.decode_one_bests(utterances, search, tokenizer.encode, len(tokenizer))
    log.info("%s: %d pseudo-labels decoded with the LM", system.name, count)


def log_candidates(plan: Plan) -> None:
    """The target's candidates: each drop before training with its reason, each kept one with its
    projected training time and where the s/step comes from."""
    target = plan.target
    kept = [c for c in plan.candidates if c.dropped is None]
    log.info("target: %s; %d of %d candidates trained, projected %.2f h (%g s/step from "
             "target.step_seconds%s)", target.describe(), len(kept), len(plan.candidates),
             sum(c.projected_s for c in kept) / 3600, target.step_seconds,
             f", max_hours {target.max_hours:g}" if target.max_hours else "")
    for c in plan.candidates:
        if c.dropped is not None:
            log.info("target: %s dropped before training: %s", c.name, c.dropped)
        else:
            log.info("target: %s kept: %d parameters, latency %.0f ms, %.0f s projected", c.name, c.params,
                     c.latency_ms, c.projected_s)
    if target.threads != 1:
        log.warning("target.threads=%d: stage export measures RTF on 1 thread; that RTF is checked",
                    target.threads)


def run(cfg: DictConfig) -> None:
    plan = Plan(cfg)
    if plan.target is not None:
        log_candidates(plan)
    for system in plan.systems.values():
        train_system(cfg, plan, system)
