"""The report's plots (PNG, matplotlib, headless): WER per system, WER against cost (Pareto), training
curves. Each takes plain data (report.json's dict, train_log.jsonl rows) and writes one file atomically.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from asr_kd.utils import atomic_path

__all__ = ["plot_report", "plot_pareto", "plot_training_curves", "curve_panels", "pareto_front", "plot_gains"]

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
    """WER against parameters, RTF and (streamed decodes) latency; one colour per test set, the Pareto
    front of each test set drawn as a step line. Points carry a system's number, not its name (long
    names overlap where systems crowd), and the key below the panels names each number. With a budget
    (``report["target"]``), a size panel too, each limit a dashed line with its feasible side shaded,
    and the winner's deployed decode circled."""
    plt = _pyplot()
    from matplotlib import ticker

    costs = [("params", "parameters", "log"), ("rtf", "RTF (CPU s / audio s)", "log"),
             ("latency_ms", "algorithmic latency ms", "linear")]
    target = report.get("target")
    if target:
        costs.append(("size_mb", "size MB (graph file; fp32 weights)", "log"))
    winner = (target or {}).get("winner") or {}
    systems = sorted({name for rows in report["test_sets"].values() for name in rows})
    number = {name: i + 1 for i, name in enumerate(systems)}
    columns = 4
    key_rows = -(-len(systems) // columns)
    fig, axes = plt.subplots(1, len(costs), figsize=(4.2 * len(costs), 3.8 + 0.18 * key_rows))
    for ax, (key, label, scale) in zip(axes, costs, strict=True):
        for colour, (test_set, rows) in zip(plt.cm.tab10.colors, report["test_sets"].items(), strict=False):
            points = [(r[key], 100 * r["wer"], name) for name, r in rows.items() if r.get(key) is not None]
            if not points:
                continue
            ax.scatter([p[0] for p in points], [p[1] for p in points], color=colour, label=test_set, s=18)
            for x, y, name in points:  # alternate sides, so neighbours at one cost do not collide
                right = number[name] % 2
                ax.annotate(str(number[name]), (x, y), fontsize=7, xytext=(4 if right else -4, 0),
                            textcoords="offset points", ha="left" if right else "right", va="center")
            front = pareto_front([(x, y) for x, y, _ in points])
            ax.step([p[0] for p in front], [p[1] for p in front], where="post", color=colour, alpha=0.5)
            for x, y, name in points:
                if name == winner.get("decode"):
                    ax.scatter([x], [y], s=160, facecolors="none", edgecolors="black", linewidths=1.5,
                               label="budget winner" if test_set == next(iter(report["test_sets"])) else None)
        ax.set_xscale(scale)
        if scale == "log":  # a few readable ticks, not every minor one in scientific notation
            ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:.3g}"))
            ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_xlabel(label)
        ax.set_ylabel("WER %")
        ax.grid(alpha=0.3)
        limit = (target or {}).get("budget", {}).get(key)
        if limit is not None:  # after the scale: the shaded side starts at the panel's left edge
            left = min(ax.get_xlim()[0], limit / 2)
            ax.axvline(limit, color="green", linestyle="--", linewidth=1)
            ax.axvspan(left, limit, color="green", alpha=0.08, label=f"budget {key} <= {limit:g}")
            ax.set_xlim(left=left)
        if ax is axes[0] or target:
            ax.legend(fontsize="small")
    key = [f"{number[name]:>2}  {name}" for name in systems]
    for c in range(columns):
        fig.text(0.02 + c / columns, 0.01, "\n".join(key[c * key_rows:(c + 1) * key_rows]),
                 fontsize=7, family="monospace", va="bottom")
    fig.tight_layout(rect=(0, (0.18 * key_rows + 0.15) / (3.8 + 0.18 * key_rows), 1, 1))
    _save(fig, path)


def curve_panels(logs: dict[str, list[dict]]) -> dict[str, dict[str, dict[int, float]]]:
    """metric -> system -> step -> value of the panels to draw: dev WER, the loss, then every other
    term that varies (a term constant in every system, like a fixed ``alpha``, tells nothing)."""
    series: dict[str, dict[str, dict[int, float]]] = {}
    for system, rows in logs.items():
        for row in rows:
            for key, value in row.items():
                if key not in _NOT_LOSSES and isinstance(value, (int, float)):
                    series.setdefault(key, {}).setdefault(system, {})[row["step"]] = value
    varying = {m for m, by_system in series.items()
               if len({v for points in by_system.values() for v in points.values()}) > 1}
    metrics = [m for m in ("dev_wer", "loss") if m in series]
    metrics += sorted(m for m in varying if m not in metrics and not m.startswith("dev_"))
    return {m: series[m] for m in metrics}


def plot_training_curves(logs: dict[str, list[dict]], path: str | os.PathLike) -> None:
    """Dev WER and each loss term against step, one line per system, from ``train_log.jsonl`` rows
    (``{"step", "loss", "ctc", "kd", "lr", ...}`` and ``{"step", "dev_wer", ...}``; a resumed run's
    repeated steps keep their last value); the panels are :func:`curve_panels`'s."""
    plt = _pyplot()
    panels = curve_panels(logs)
    metrics = list(panels)
    if not metrics:
        raise ValueError("no metrics to plot in the training logs of " + ", ".join(logs))
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for system, points in panels[metric].items():
            steps = sorted(points)
            scale = 100 if metric == "dev_wer" else 1
            ax.plot(steps, [scale * points[s] for s in steps], marker=".", label=system)
        ax.set_title("dev WER %" if metric == "dev_wer" else metric)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize="small")
    fig.tight_layout()
    _save(fig, path)


def plot_gains(sweep: dict, path: str | os.PathLike) -> None:
    """A teacher-strength sweep (asr_kd.scoring.aggregate.teacher_gains): each distilled system's dev
    gain over the CTC-only baseline against the teacher's dev gap to it, one line per system."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    systems = list(dict.fromkeys(n for r in sweep["runs"].values() for n in r["gains"]))
    for name in systems:
        points = sorted((100 * r["teacher_gap"], 100 * r["gains"][name]) for r in sweep["runs"].values()
                        if name in r["gains"])
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name)
    ax.axhline(0, color="grey", lw=0.8)
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_xlabel(f"teacher gap: dev WER of {sweep['baseline']} - teacher's (points)")
    ax.set_ylabel(f"gain: dev WER of {sweep['baseline']} - system's (points)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    _save(fig, path)
