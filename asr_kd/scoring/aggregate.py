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

With ``sweep`` (``stage=compare sweep=<CTC-only system>``: runs that differ in their teacher, a
teacher-strength sweep) ``compare.json`` also holds ``"sweep": {"baseline", "runs": {RUN: {"teacher_gap",
"gains": {SYSTEM: gain}}}}`` from report.json's ``systems.<name>.dev_wer``: ``teacher_gap`` = the
baseline's dev WER minus the teacher's (positive: the teacher knows more), each ``gain`` = the baseline's
dev WER minus the distilled system's (positive: distillation paid); fractions, as report.json's.
"""

from __future__ import annotations

import statistics

__all__ = ["METRICS", "aggregate_reports", "render_compare_markdown", "teacher_gains",
           "render_sweep_markdown"]

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


def teacher_gains(reports: dict[str, dict], baseline: str) -> dict:
    """The ``sweep`` entry (module docstring): per run, the teacher's dev gap to ``baseline`` and every
    other system's dev gain over it; systems without a dev WER, and runs without the baseline's, are
    left out."""
    runs = {}
    for run, report in reports.items():
        dev = {name: s.get("dev_wer") for name, s in report["systems"].items()}
        if dev.get(baseline) is None or dev.get("teacher") is None:
            continue
        gains = {name: dev[baseline] - wer for name, wer in dev.items()
                 if wer is not None and name not in ("teacher", baseline)}
        runs[run] = {"teacher_gap": dev[baseline] - dev["teacher"], "gains": gains}
    return {"baseline": baseline, "runs": runs}


def render_sweep_markdown(sweep: dict) -> str:
    """The sweep table: one row per run, the teacher's dev gap and each system's dev gain, in points."""
    systems = list(dict.fromkeys(n for r in sweep["runs"].values() for n in r["gains"]))
    lines = [f"## Distillation gain against the teacher's gap (dev WER points over {sweep['baseline']})", "",
             "| run | teacher gap | " + " | ".join(systems) + " |", "|---|---:|" + "---:|" * len(systems)]
    for run, r in sweep["runs"].items():
        gains = [f"{100 * r['gains'][n]:+.2f}" if n in r["gains"] else "-" for n in systems]
        lines.append(f"| {run} | {100 * r['teacher_gap']:+.2f} | " + " | ".join(gains) + " |")
    return "\n".join([*lines, ""])
