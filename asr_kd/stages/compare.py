"""Stage ``compare`` (a tool, not part of ``all``): several experiments' reports as mean ± sd.

Reads:  ``<run>/report.json`` of every directory in ``runs`` (each scored by ``stage=score``).
Writes: ``compare.json`` (contract in asr_kd.scoring.aggregate) and ``compare.md`` in ``exp_dir``.
Run:    ``asr-kd stage=compare runs=[exp/seed0,exp/seed1,exp/seed2] exp_dir=exp/seeds``
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from asr_kd.scoring.aggregate import aggregate_reports, render_compare_markdown
from asr_kd.stages.base import exp_paths
from asr_kd.utils import atomic_path, read_json, write_json

log = logging.getLogger(__name__)


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
    root = exp_paths(cfg).root
    write_json(root / "compare.json", agg)
    with atomic_path(root / "compare.md") as tmp:
        tmp.write_text(render_compare_markdown(agg), encoding="utf-8")
    log.info("compare: %d runs -> %s\n%s", len(reports), root / "compare.md", render_compare_markdown(agg))
