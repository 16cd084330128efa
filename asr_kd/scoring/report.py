"""The report: WER/CER per test set and system, with size and speed, as JSON, Markdown and a plot.

``report.json``::

    {"test_sets": {SET: {SYSTEM: {"wer", "cer", "params", "size_mb", "rtf", "utterances", "latency_ms",
                                  ["lm_weight" (``_lm`` systems)]}}},
     "systems": {SYSTEM: {"params", "size_mb", "kind"}}}

WER/CER are fractions (0.05 = 5 %); ``size_mb`` is the checkpoint's fp32 weights in MB (1e6
bytes); ``rtf`` is CPU seconds per audio second on one thread; ``latency_ms`` is the algorithmic
latency of streamed decodes (chunk + look-ahead + feature window), ``null`` for offline ones,
which wait for the end of the utterance. ``<system>_streaming`` is a streamed decode,
``<system>_lm`` a beam search with the train transcripts' word LM and lexicon (``decode=beam_lm``),
at the ``lm_weight`` chosen for that system on the dev set.
"""

from __future__ import annotations

import os

from asr_kd.utils import atomic_path

__all__ = ["render_markdown", "plot_report"]


def render_markdown(report: dict) -> str:
    lines = ["# asr-kd report", ""]
    for test_set, systems in report["test_sets"].items():
        lines += [f"## {test_set}", "",
                  "| system | WER % | CER % | params | size MB | RTF (1 thread, CPU) | latency ms |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for name, r in systems.items():
            latency = "utterance" if r.get("latency_ms") is None else f"{r['latency_ms']:.0f}"
            lines.append(
                f"| {name} | {100 * r['wer']:.2f} | {100 * r['cer']:.2f} | {r['params']:,} "
                f"| {r['size_mb']:.2f} | {r['rtf']:.4f} | {latency} |"
            )
        weights = [f"{name} {r['lm_weight']:g}" for name, r in systems.items() if "lm_weight" in r]
        lines += ["", f"LM weights: {', '.join(weights)}"] if weights else []
        lines.append("")
    return "\n".join(lines)


def plot_report(report: dict, path: str | os.PathLike) -> None:
    """Grouped bar chart of WER per test set and system (matplotlib, headless)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(report["test_sets"])
    systems = list(dict.fromkeys(s for t in sets for s in report["test_sets"][t]))
    fig, ax = plt.subplots(figsize=(1.5 + 1.6 * len(sets) * max(1, len(systems)) / 3, 3.5))
    width = 0.8 / max(1, len(systems))
    for j, system in enumerate(systems):
        xs = [i + j * width for i in range(len(sets))]
        wers = [100 * report["test_sets"][t].get(system, {}).get("wer", float("nan")) for t in sets]
        ax.bar(xs, wers, width, label=system)
    ax.set_xticks([i + width * (len(systems) - 1) / 2 for i in range(len(sets))], sets)
    ax.set_ylabel("WER %")
    ax.legend(fontsize="small")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
