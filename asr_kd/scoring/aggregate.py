"""Across runs: several experiments' ``report.json`` (seeds, machines) as mean +- sd per system.

``compare.json``::

    {"runs": [RUN, ...],
     "test_sets": {SET: {SYSTEM: {METRIC: {"mean", "sd", "n", "runs": {RUN: value}}}}},
     "comparisons": [{"test_set", "a", "b", "delta": {"mean", "sd", "n", "runs": {RUN: value}},
                      "p": {RUN: p}, "significant": {"better": n, "worse": n, "none": n},
                      ["pooled": {"delta", "ci95", "p", "p_improve", "p_wilcoxon"}]}]}

METRIC is ``wer``, ``cer`` and ``rtf`` (report.json's meaning: fractions, CPU seconds per audio second);
``sd`` is the sample standard deviation (``null`` for one run); a system or comparison missing from
a run is left out of that run's values (``n`` counts the runs that have it). ``significant`` counts
the runs whose own paired test (report.json ``comparisons``) found ``a`` better, worse, or neither;
``p`` is each run's own p. ``pooled`` (``stage=compare folds=true``: the runs are folds with disjoint
test sets) tests the mean difference over the runs that have both decodes with a stratified paired
bootstrap (asr_kd.scoring.significance.pooled_compare), in report.json's units.
"""

from __future__ import annotations

import statistics

__all__ = ["METRICS", "aggregate_reports", "render_compare_markdown"]

#: The per-system figures aggregated across runs.
METRICS = ("wer", "cer", "rtf")


def _summary(values: dict[str, float]) -> dict:
    vals = list(values.values())
    return {"mean": statistics.fmean(vals), "sd": statistics.stdev(vals) if len(vals) > 1 else None,
            "n": len(vals), "runs": values}


def aggregate_reports(reports: dict[str, dict]) -> dict:
    """Aggregate ``{run name: report.json dict}`` (see module docstring); keeps first-seen order."""
    test_sets: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    deltas: dict[tuple[str, str, str], dict[str, dict]] = {}
    for run, report in reports.items():
        for test_set, systems in report["test_sets"].items():
            for system, r in systems.items():
                per_metric = test_sets.setdefault(test_set, {}).setdefault(system, {})
                for metric in METRICS:
                    per_metric.setdefault(metric, {})[run] = r[metric]
        for c in report.get("comparisons", []):
            deltas.setdefault((c["test_set"], c["a"], c["b"]), {})[run] = c
    comparisons = []
    for (test_set, a, b), runs in deltas.items():
        verdicts = ["better" if c["ci95"][1] < 0 else "worse" if c["ci95"][0] > 0 else "none"
                    for c in runs.values()]
        comparisons.append({
            "test_set": test_set, "a": a, "b": b,
            "delta": _summary({run: c["delta"] for run, c in runs.items()}),
            "p": {run: c["p"] for run, c in runs.items()},
            "significant": {k: verdicts.count(k) for k in ("better", "worse", "none")},
        })
    return {
        "runs": list(reports),
        "test_sets": {t: {s: {m: _summary(v) for m, v in metrics.items()} for s, metrics in systems.items()}
                      for t, systems in test_sets.items()},
        "comparisons": comparisons,
    }


def _pm(summary: dict, scale: float = 100) -> str:
    sd = "" if summary["sd"] is None else f" ± {scale * summary['sd']:.2f}"
    return f"{scale * summary['mean']:.2f}{sd}"


def render_compare_markdown(agg: dict) -> str:
    """``compare.md``: per test set, WER % mean ± sd and each run's value; then the comparisons."""
    runs = agg["runs"]
    lines = ["# asr-kd: across runs", "", "Runs: " + ", ".join(f"`{r}`" for r in runs), ""]
    for test_set, systems in agg["test_sets"].items():
        lines += [f"## {test_set}", "",
                  "| system | WER % mean ± sd | n | " + " | ".join(runs) + " |",
                  "|---|---:|---:|" + "---:|" * len(runs)]
        for system, metrics in systems.items():
            wer = metrics["wer"]
            per_run = [f"{100 * wer['runs'][r]:.2f}" if r in wer["runs"] else "-" for r in runs]
            lines.append(f"| {system} | {_pm(wer)} | {wer['n']} | " + " | ".join(per_run) + " |")
        lines.append("")
    if agg["comparisons"]:
        pooled = any("pooled" in c for c in agg["comparisons"])
        lines += ["## Paired comparisons (WER(a) - WER(b), points)", "",
                  "| test set | a | b | per run (paired p) | delta mean ± sd | lower in | "
                  "a better / worse / no difference |" + (" pooled mean [95% CI], p |" if pooled else ""),
                  "|---|---|---|---|---:|---:|---|" + ("---:|" if pooled else "")]
        for c in agg["comparisons"]:
            s, runs = c["significant"], c["delta"]["runs"]
            per_run = ", ".join(f"{r} {100 * d:+.2f} ({c['p'][r]:.3f})" for r, d in runs.items())
            lower = f"{sum(d < 0 for d in runs.values())} of {len(runs)}"
            row = (f"| {c['test_set']} | {c['a']} | {c['b']} | {per_run} | {_pm(c['delta'])} | {lower} | "
                   f"{s['better']} / {s['worse']} / {s['none']} |")
            if pooled:
                q = c.get("pooled")
                row += (f" {100 * q['delta']:+.2f} [{100 * q['ci95'][0]:+.2f}, {100 * q['ci95'][1]:+.2f}], "
                        f"p = {q['p']:.3f} |" if q else " |")
            lines.append(row)
        lines.append("")
    return "\n".join(lines)
