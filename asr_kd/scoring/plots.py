"""The report's plots (PNG, matplotlib, headless): WER per system, WER against cost (Pareto), training
curves. Each takes plain data (report.json's dict, train_log.jsonl rows) and writes one file atomically.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from asr_kd.utils import atomic_path

__all__ = ["plot_report", "plot_pareto", "plot_training_curves", "pareto_front"]

#: train_log.jsonl keys that are not loss terms.
_NOT_LOSSES = {"step", "lr", "grad_norm", "x_realtime"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    _pyplot().close(fig)


def plot_report(report: dict, path: str | os.PathLike) -> None:
    """Grouped bar chart of WER per test set and system, with the 95 % intervals as error bars."""
    plt = _pyplot()
    sets = list(report["test_sets"])
    systems = list(dict.fromkeys(s for t in sets for s in report["test_sets"][t]))
    fig, ax = plt.subplots(figsize=(1.5 + 1.6 * len(sets) * max(1, len(systems)) / 3, 3.5))
    width = 0.8 / max(1, len(systems))
    nan = {"wer": float("nan"), "wer_ci95": [float("nan")] * 2}
    for j, system in enumerate(systems):
        xs = [i + j * width for i in range(len(sets))]
        rows = [report["test_sets"][t].get(system, nan) for t in sets]
        wers = [100 * r["wer"] for r in rows]
        errs = [[100 * (r["wer"] - r["wer_ci95"][0]) for r in rows],
                [100 * (r["wer_ci95"][1] - r["wer"]) for r in rows]]
        ax.bar(xs, wers, width, yerr=errs, capsize=2, label=system)
    ax.set_xticks([i + width * (len(systems) - 1) / 2 for i in range(len(sets))], sets)
    ax.set_ylabel("WER % (95% CI)")
    ax.legend(fontsize="small")
    fig.tight_layout()
    _save(fig, path)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both cost (x) and WER (y), sorted by cost."""
    front, best = [], float("inf")
    for x, y in sorted(points):
        if y < best:
            front.append((x, y))
            best = y
    return front


def plot_pareto(report: dict, path: str | os.PathLike) -> None:
    """WER against parameters, RTF and (streamed decodes) latency; one colour per test set, each
    point labelled with its system, the Pareto front of each test set drawn as a step line."""
    plt = _pyplot()
    costs = [("params", "parameters", "log"), ("rtf", "RTF (CPU s / audio s)", "log"),
             ("latency_ms", "algorithmic latency ms", "linear")]
    fig, axes = plt.subplots(1, len(costs), figsize=(4.2 * len(costs), 3.8))
    for ax, (key, label, scale) in zip(axes, costs, strict=True):
        for colour, (test_set, systems) in zip(plt.cm.tab10.colors, report["test_sets"].items(),
                                               strict=False):
            points = [(r[key], 100 * r["wer"], name) for name, r in systems.items() if r.get(key) is not None]
            if not points:
                continue
            ax.scatter([p[0] for p in points], [p[1] for p in points], color=colour, label=test_set, s=18)
            for x, y, name in points:
                ax.annotate(name, (x, y), fontsize=6, xytext=(3, 2), textcoords="offset points")
            front = pareto_front([(x, y) for x, y, _ in points])
            ax.step([p[0] for p in front], [p[1] for p in front], where="post", color=colour, alpha=0.5)
        ax.set_xscale(scale)
        ax.set_xlabel(label)
        ax.set_ylabel("WER %")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    fig.tight_layout()
    _save(fig, path)


def plot_training_curves(logs: dict[str, list[dict]], path: str | os.PathLike) -> None:
    """Dev WER and each loss term against step, one line per system, from ``train_log.jsonl`` rows
    (``{"step", "loss", "ctc", "kd", "lr", ...}`` and ``{"step", "dev_wer", ...}``; a resumed run's
    repeated steps keep their last value)."""
    plt = _pyplot()
    series: dict[str, dict[str, dict[int, float]]] = {}  # metric -> system -> step -> value
    for system, rows in logs.items():
        for row in rows:
            for key, value in row.items():
                if key not in _NOT_LOSSES and isinstance(value, (int, float)):
                    series.setdefault(key, {}).setdefault(system, {})[row["step"]] = value
    metrics = [m for m in ("dev_wer", "loss") if m in series]
    metrics += sorted(m for m in series if m not in metrics and not m.startswith("dev_"))
    if not metrics:
        raise ValueError("no metrics to plot in the training logs of " + ", ".join(logs))
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for system, points in series[metric].items():
            steps = sorted(points)
            scale = 100 if metric == "dev_wer" else 1
            ax.plot(steps, [scale * points[s] for s in steps], marker=".", label=system)
        ax.set_title("dev WER %" if metric == "dev_wer" else metric)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize="small")
    fig.tight_layout()
    _save(fig, path)
