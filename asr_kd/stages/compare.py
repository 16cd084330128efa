"""Stage ``compare`` (a tool, not part of ``all``): several experiments' reports as mean ± sd.

Reads:  ``<run>/report.json`` of every directory in ``runs`` (each scored by ``stage=score``); with
        ``folds=true`` also their ``decode/<system>/<set>.jsonl``.
Writes: ``compare.json`` (contract in asr_kd.scoring.aggregate) and ``compare.md`` in ``exp_dir``
        (with ``sweep``: also ``compare_sweep.png``).
Run:    ``asr-kd stage=compare runs=[exp/seed0,exp/seed1,exp/seed2] exp_dir=exp/seeds``
        ``asr-kd stage=compare runs=[exp/xval/george,...] folds=true exp_dir=exp/xval``: the runs are
        cross-validation folds (disjoint test sets), so each comparison's mean over them is tested too
        (a stratified paired bootstrap; recipes/fsdd/cross_speaker.sh).
        ``asr-kd stage=compare runs=[exp/demo,exp/demo/teacher_steps400] sweep=student_ctc_q``: runs
        that differ in their teacher; also each distilled system's dev gain over that CTC-only system
        against the teacher's dev gap to it (``compare_sweep.png``; recipes/demo/teacher_sweep.sh).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from asr_kd.errors import MissingUpstreamError
from asr_kd.paths import ExpPaths
from asr_kd.scoring.aggregate import (
    aggregate_reports,
    render_compare_markdown,
    render_sweep_markdown,
    teacher_gains,
)
from asr_kd.scoring.plots import plot_gains
from asr_kd.scoring.report import read_decode
from asr_kd.scoring.significance import Bootstrap, pooled_compare
from asr_kd.stages.base import exp_paths
from asr_kd.utils import atomic_path, read_json, write_json

log = logging.getLogger(__name__)


def _fold_bootstrap(run: str, test_set: str, a: str, b: str, resamples: int, seed: int) -> Bootstrap:
    """One fold's bootstrap of decodes ``a`` and ``b`` of ``test_set``, paired by utterance id."""
    errors = {}
    for name in (a, b):
        path = ExpPaths(Path(run).absolute()).decode(name, test_set)
        if not path.exists():
            raise MissingUpstreamError(f"runs: {run} has no decode {path}; run `asr-kd stage=decode "
                                       f"exp_dir={run}` (and export) first")
        errors[name] = read_decode(path, name).errors
    ids = sorted(errors[a].ids)
    if sorted(errors[b].ids) != ids:
        raise ValueError(f"runs: {run}: decodes {a} and {b} of {test_set} cover other utterances")
    order = {name: {u: i for i, u in enumerate(e.ids)} for name, e in errors.items()}
    by_id = {name: e.errors[[order[name][u] for u in ids]] for name, e in errors.items()}
    words = errors[a].words[[order[a][u] for u in ids]]
    return Bootstrap(by_id, np.asarray(words), resamples=resamples, seed=seed)


def run(cfg: DictConfig) -> None:
    if not cfg.runs:
        raise ValueError("stage=compare needs the experiments to aggregate: runs=[exp/a,exp/b,...]")
    reports = {}
    for run_dir in cfg.runs:
        path = Path(run_dir) / "report.json"
        if not path.exists():
            raise FileNotFoundError(f"runs: {run_dir} has no report.json; run `asr-kd stage=score "
                                    f"exp_dir={run_dir}` first")
        if str(run_dir) in reports:
            raise ValueError(f"runs: {run_dir} is listed twice")
        reports[str(run_dir)] = read_json(path)
    agg = aggregate_reports(reports)
    if cfg.folds:
        for c in agg["comparisons"]:
            strata = [_fold_bootstrap(r, c["test_set"], c["a"], c["b"], cfg.score.resamples,
                                      cfg.score.seed + k) for k, r in enumerate(c["delta"]["runs"])]
            c["pooled"] = dataclasses.asdict(pooled_compare(strata, c["a"], c["b"]))
    root = exp_paths(cfg).root
    markdown = render_compare_markdown(agg)
    if cfg.sweep:
        agg["sweep"] = teacher_gains(reports, cfg.sweep)
        if not agg["sweep"]["runs"]:
            raise ValueError(f"sweep: no run's report.json has the dev WER of the teacher and of {cfg.sweep} "
                             "(systems.<name>.dev_wer, written by stage=score)")
        markdown += "\n" + render_sweep_markdown(agg["sweep"])
        plot_gains(agg["sweep"], root / "compare_sweep.png")
    write_json(root / "compare.json", agg)
    with atomic_path(root / "compare.md") as tmp:
        tmp.write_text(markdown, encoding="utf-8")
    log.info("compare: %d runs -> %s\n%s", len(reports), root / "compare.md", markdown)
