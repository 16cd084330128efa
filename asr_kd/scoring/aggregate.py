"""Across runs: several experiments' ``report.json`` (seeds, machines) as mean +- sd per system.

``compare.json``::

    {"runs": [RUN, ...],
     "test_sets": {SET: {SYSTEM: {METRIC: {"mean", "sd", "n", "runs": {RUN: value}}}}},
     "comparisons": [{"test_set", "a", "b", "delta": {"mean", "sd", "n", "runs": {RUN: value}},
                      "significant": {"better": n, "worse": n, "none": n}}]}

METRIC is ``wer``, ``cer`` and ``rtf`` (report.json's meaning: fractions, CPU seconds per audio second);
``sd`` is the sample standard deviation (``null`` for one run); a system or comparison missing from
a run is left out of that run's values (``n`` counts the runs that have it). ``significant`` counts
the runs whose own paired test (report.json ``comparisons``) found ``a`` better, worse, or neither.
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
        lines += ["## Paired comparisons (WER(a) - WER(b), points)", "",
                  "| test set | a | b | delta mean ± sd | n | a better / worse / no difference |",
                  "|---|---|---|---:|---:|---|"]
        for c in agg["comparisons"]:
            s = c["significant"]
            lines.append(f"| {c['test_set']} | {c['a']} | {c['b']} | {_pm(c['delta'])} | {c['delta']['n']} "
                         f"| {s['better']} / {s['worse']} / {s['none']} |")
        lines.append("")
    return "\n".join(lines)
