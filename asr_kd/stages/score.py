"""Stage ``score``: per-utterance errors (jiwer) of every decode, bootstrap intervals and paired
comparisons, plots, provenance: the report.

Reads:  ``decode/<system>/<set>.jsonl``, ``data/<set>.jsonl`` (speakers), ``models/<system>/model.pt``
        (sizes), ``models/teacher/teacher.json`` (the report's ``teacher``),
        ``models/<system>/train_log.jsonl`` (curves), ``stamps/`` (wall times).
Writes: ``report.json`` (contract in asr_kd.scoring.report), ``report.md``, ``report.png`` (WER per
        system), ``report_pareto.png`` (WER against parameters, RTF, latency), ``report_curves.png``
        (training curves), ``decode/<system>/<set>.align.txt`` (each utterance's alignment, jiwer);
        with a budget (``target.*``), ``target.json`` (contract in asr_kd.scoring.target: every
        candidate met or missed on its measured numbers, and the winner), also in the report.
Run:    ``asr-kd stage=score [score.resamples=1000] [score.seed=0]
        [score.compare=[[student_kd_lm,student_kd]]]``

Comparisons: every student against the CTC-only baseline, plus the pairs of ``score.compare``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from asr_kd.errors import MissingUpstreamError
from asr_kd.models.adapters import is_pretrained
from asr_kd.models.bundle import count_parameters, load_bundle
from asr_kd.paths import ExpPaths
from asr_kd.scoring.plots import plot_pareto, plot_report, plot_training_curves
from asr_kd.scoring.provenance import provenance
from asr_kd.scoring.report import (
    VARIANTS,
    Decode,
    comparison_pairs,
    read_decode,
    render_markdown,
    score_test_set,
)
from asr_kd.scoring.target import GRAPH_SUFFIXES, LIMITS, Measured, last_dev_wer, select
from asr_kd.stages.base import StageStamp
from asr_kd.stages.plan import Plan
from asr_kd.utils import atomic_path, read_json, read_jsonl, write_json

log = logging.getLogger(__name__)


def load_decodes(paths: ExpPaths, test_set: str, systems: list[str]) -> dict[str, Decode]:
    """Every decode of ``test_set`` by ``systems`` (all variants), scored per utterance; writes each
    one's alignments beside it (``<set>.align.txt``)."""
    decodes = {}
    for system in systems:
        for name in (f"{system}{v}" for v in VARIANTS):
            path = paths.decode(name, test_set)
            if path.exists():
                decodes[name] = read_decode(path, system)
                with atomic_path(path.with_suffix(".align.txt")) as tmp:
                    tmp.write_text(decodes[name].errors.alignment, encoding="utf-8")
    return decodes


def dev_wer(train_log: Path) -> float | None:
    """The dev WER of a model's last evaluation (``None``: not trained here)."""
    last = last_dev_wer(train_log)
    return None if last is None else last[0]


def measure_candidates(paths: ExpPaths, plan: Plan, report: dict) -> dict[str, Measured]:
    """The measured numbers of each trained candidate: its last dev WER (report.json ``systems``), its
    early stop (training log), and per exported graph its size, latency and worst RTF over the test
    sets (report rows)."""
    measured = {}
    for c in plan.candidates:
        log_path = paths.model_dir(c.name) / "train_log.jsonl"
        if c.dropped is not None or not log_path.exists():
            continue
        stopped = next((r["stopped"] for r in reversed(read_jsonl(log_path)) if "stopped" in r), None)
        graphs = {}
        for graph, suffixes in GRAPH_SUFFIXES.items():
            for decode in (f"{c.name}{s}" for s in suffixes):
                entries = [t[decode] for t in report["test_sets"].values() if decode in t]
                if entries:
                    graphs[graph] = {"decode": decode, **{k: max(e[k] for e in entries) for k in LIMITS}}
        measured[c.name] = Measured(report["systems"].get(c.name, {}).get("dev_wer"), stopped, graphs)
    return measured


def run(cfg: DictConfig) -> None:
    plan = Plan(cfg)
    systems = plan.decoded
    stamp = StageStamp(cfg, "score", plan)
    baselines = plan.baselines
    students = [s for s in plan.systems if s not in baselines]
    if stamp.is_done():
        return
    paths = stamp.paths
    sizes = {}
    teacher = read_json(paths.teacher_info) if paths.teacher_info.exists() else None
    for system in systems:
        if system == "teacher" and is_pretrained(cfg.teacher):  # no bundle: its description says its size
            params, streaming = teacher["params"], False
        else:
            model = load_bundle(paths.checkpoint(system)).model
            params, streaming = count_parameters(model), model.streaming
        config = plan.systems[system].config if system in plan.systems else plan.settings("teacher")
        sizes[system] = {"params": params, "size_mb": 4 * params / 1e6,
                         "kind": "streaming" if streaming else "offline", "config": config,
                         "dev_wer": dev_wer(paths.model_dir(system) / "train_log.jsonl")}
    report = {"test_sets": {}, "systems": sizes, "comparisons": [], "teacher": teacher}
    blocked_by = {}
    for test_set in cfg.test_sets:
        decodes = load_decodes(paths, test_set, systems)
        if not decodes:
            raise MissingUpstreamError(f"score: no decode of {test_set} under {paths.root / 'decode'}; "
                                    f"run `asr-kd stage=decode exp_dir={paths.root}`")
        manifest = paths.manifest(test_set)
        speakers = {r["id"]: r.get("speaker") for r in read_jsonl(manifest)} if manifest.exists() else None
        pairs = comparison_pairs(list(decodes), baselines, students, [list(p) for p in cfg.score.compare])
        entries, comparisons, blocked_by[test_set] = score_test_set(
            test_set, decodes, sizes, speakers, pairs,
            cfg.score.resamples, cfg.score.seed, cfg.score.min_speakers,
        )
        report["test_sets"][test_set] = entries
        report["comparisons"] += comparisons
    report["bootstrap"] = {"resamples": cfg.score.resamples, "seed": cfg.score.seed,
                           "min_speakers": cfg.score.min_speakers, "interval": "percentile",
                           "blocked_by": blocked_by}
    report["provenance"] = provenance(cfg, paths.stamp("score").parent)
    if plan.target is not None:
        outcome = select(plan.target, plan.candidates, measure_candidates(paths, plan, report))
        write_json(paths.target_json, outcome)
        report["target"] = outcome
        (log.info if outcome["winner"] else log.warning)("%s", outcome["message"])
    write_json(paths.report_json, report)
    with atomic_path(paths.report_md) as tmp:
        tmp.write_text(render_markdown(report), encoding="utf-8")
    plot_report(report, paths.report_png)
    plot_pareto(report, paths.report_pareto_png)
    logs = {s: read_jsonl(p) for s in systems if (p := paths.model_dir(s) / "train_log.jsonl").exists()}
    if logs:
        plot_training_curves(logs, paths.report_curves_png)
    log.info("score: report at %s\n%s", paths.report_md, render_markdown(report))
    stamp.done()
