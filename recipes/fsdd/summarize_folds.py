"""One WER table over the folds of ``cross_speaker.sh``: a row per held-out speaker, then the mean
and standard deviation, read from each fold's ``report.json`` (test set ``test``); then each KD
student minus ``student_ctc``, fold by fold, since speakers differ far more than systems do.

    python recipes/fsdd/summarize_folds.py exp/fsdd_xval
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

BASELINE = "student_ctc"  # the recipe's CTC-only system (conf/config.yaml, systems)
SYSTEMS = ("teacher", BASELINE, "student_kd", "student_kd_plain")
VARIANTS = ("", "_streaming", "_lm")


def fold_wers(report: Path) -> dict[str, float]:
    """WER % of every system variant present in one fold's report.json."""
    scores = json.loads(report.read_text())["test_sets"]["test"]
    return {name: 100 * row["wer"] for name, row in scores.items()}


def mean_sd(values: list[float]) -> str:
    """``mean ± sd`` to two decimals (sd 0 for a single value)."""
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {spread:.2f}"


def main(root: Path) -> None:
    folds = {p.parent.name: fold_wers(p) for p in sorted(root.glob("*/report.json"))}
    if not folds:
        sys.exit(f"no */report.json under {root}")
    columns = [s + v for s in SYSTEMS for v in VARIANTS if any(s + v in f for f in folds.values())]
    print("| held-out speaker | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for speaker, wers in folds.items():
        print(f"| {speaker} | " + " | ".join(f"{wers[c]:.2f}" if c in wers else "" for c in columns) + " |")
    cells = [mean_sd([f[c] for f in folds.values() if c in f]) for c in columns]
    print(f"| mean ± sd ({len(folds)} folds) | " + " | ".join(cells) + " |\n")
    for system in SYSTEMS[SYSTEMS.index(BASELINE) + 1:]:
        for variant in VARIANTS:
            pairs = [(f[system + variant], f[BASELINE + variant]) for f in folds.values()
                     if system + variant in f and BASELINE + variant in f]
            if pairs:
                diffs = [kd - ctc for kd, ctc in pairs]
                print(f"{system + variant} - {BASELINE + variant}: {mean_sd(diffs)} points, "
                      f"lower in {sum(d < 0 for d in diffs)} of {len(diffs)} folds")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "exp/fsdd_xval"))
