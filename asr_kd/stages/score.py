"""Stage ``score``: WER/CER (jiwer) of every decode, and the comparison report.

Reads:  ``decode/<system>/<set>.jsonl``, ``models/<system>/model.pt`` (for sizes).
Writes: ``report.json`` (contract in asr_kd.scoring.report), ``report.md``, ``report.png``.
Run:    ``asr-kd stage=score``
"""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from asr_kd.models.bundle import count_parameters, load_bundle
from asr_kd.scoring.report import plot_report, render_markdown
from asr_kd.scoring.wer import error_rates
from asr_kd.stages.base import StageStamp
from asr_kd.stages.plan import Plan
from asr_kd.utils import atomic_path, read_jsonl, write_json

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> None:
    plan = Plan(cfg)
    systems = plan.decoded
    stamp = StageStamp(cfg, "score", plan)
    if stamp.is_done():
        return
    paths = stamp.paths
    sizes = {}
    for system in systems:
        model = load_bundle(paths.checkpoint(system)).model
        params = count_parameters(model)
        config = plan.systems[system].config if system in plan.systems else plan.settings("teacher")
        sizes[system] = {"params": params, "size_mb": 4 * params / 1e6,
                         "kind": "streaming" if model.streaming else "offline", "config": config}
    report = {"test_sets": {}, "systems": sizes}
    for test_set in cfg.test_sets:
        report["test_sets"][test_set] = {}
        for system in systems:
            for name in (system, f"{system}_streaming", f"{system}_lm"):
                path = paths.decode(name, test_set)
                if not path.exists():
                    continue
                rows = read_jsonl(path)
                summary, utts = rows[-1]["summary"], rows[:-1]
                rates = error_rates([r["ref"] for r in utts], [r["hyp"] for r in utts])
                report["test_sets"][test_set][name] = {
                    "wer": rates["wer"], "cer": rates["cer"], "params": sizes[system]["params"],
                    "size_mb": sizes[system]["size_mb"], "rtf": summary["rtf"], "utterances": len(utts),
                    "latency_ms": summary.get("latency_ms"),
                }
                if "lm_weight" in summary:
                    report["test_sets"][test_set][name]["lm_weight"] = summary["lm_weight"]
    write_json(paths.report_json, report)
    with atomic_path(paths.report_md) as tmp:
        tmp.write_text(render_markdown(report), encoding="utf-8")
    plot_report(report, paths.report_png)
    log.info("score: report at %s\n%s", paths.report_md, render_markdown(report))
    stamp.done()
