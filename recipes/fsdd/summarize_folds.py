"""One WER table over the folds of ``cross_speaker.sh``: a row per held-out speaker, then the mean
and standard deviation, read from each fold's ``report.json`` (test set ``test``); then each KD
student minus ``student_ctc``, fold by fold (speakers differ far more than systems do), with each
fold's paired bootstrap p and a test of the six-fold mean difference.

The pooled test is a stratified paired bootstrap: each resample draws every fold's utterances with
replacement (folds are independent test sets of one speaker each) and averages the folds' WER
differences, as the table's mean does. It holds the six speakers fixed: it says whether the mean
difference on these speakers is beyond the noise of their test utterances, not how it would vary
over other speakers (six folds are too few for that; the fold-by-fold signs show it).

    python recipes/fsdd/summarize_folds.py exp/fsdd_speaker_adapt
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import numpy as np

from asr_kd.scoring.significance import Bootstrap
from asr_kd.scoring.wer import utterance_errors

TEACHER = "teacher"
BASELINE = "student_ctc"  # the recipe's CTC-only system (conf/config.yaml, systems)
VARIANTS = ("", "_streaming", "_lm")
TEST_SET = "test"
RESAMPLES = 2000


def fold_report(fold: Path) -> dict:
    """One fold's scores of the test set (report.json)."""
    return json.loads((fold / "report.json").read_text())


def trained_systems(reports: dict[str, dict]) -> list[str]:
    """Every trained system of any fold in report order (teacher, student_ctc, then what studies add)."""
    names: list[str] = []
    for report in reports.values():
        names += [name for name in report["systems"] if name not in names]
    return names


def fold_errors(fold: Path, decode: str) -> dict[str, tuple[int, int]]:
    """Utterance id -> (word errors, reference words) of one decode of the fold's test set."""
    rows = [json.loads(line) for line in (fold / "decode" / decode / f"{TEST_SET}.jsonl").open()][:-1]
    e = utterance_errors([r["id"] for r in rows], [r["ref"] for r in rows], [r["hyp"] for r in rows])
    return {u: (int(n), int(w)) for u, n, w in zip(e.ids, e.errors, e.words, strict=True)}


def pooled_test(folds: list[Path], a: str, b: str) -> tuple[float, tuple[float, float], float]:
    """Mean over folds of WER(a) - WER(b) (points), its 95% interval and two-sided p (module docstring)."""
    deltas = np.zeros(RESAMPLES)
    mean = 0.0
    for index, fold in enumerate(folds):
        errs_a, errs_b = fold_errors(fold, a), fold_errors(fold, b)
        ids = sorted(errs_a)
        boot = Bootstrap({a: np.array([errs_a[u][0] for u in ids]), b: np.array([errs_b[u][0] for u in ids])},
                         np.array([errs_a[u][1] for u in ids]), resamples=RESAMPLES, seed=index)
        deltas += boot.samples[:, 0] - boot.samples[:, 1]
        mean += boot.wer[a] - boot.wer[b]
    deltas *= 100 / len(folds)
    low, high = np.quantile(deltas, [0.025, 0.975])
    p = min(1.0, 2 * (min((deltas <= 0).sum(), (deltas >= 0).sum()) + 1) / (RESAMPLES + 1))
    return 100 * mean / len(folds), (float(low), float(high)), p


def mean_sd(values: list[float]) -> str:
    """``mean ± sd`` to two decimals (sd 0 for a single value)."""
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {spread:.2f}"


def main(root: Path) -> None:
    dirs = sorted(p.parent for p in root.glob("*/report.json"))
    if not dirs:
        sys.exit(f"no */report.json under {root}")
    reports = {d.name: fold_report(d) for d in dirs}
    folds = {name: {n: 100 * r["wer"] for n, r in rep["test_sets"][TEST_SET].items()}
             for name, rep in reports.items()}
    systems = trained_systems(reports)
    columns = [s + v for s in systems for v in VARIANTS if any(s + v in f for f in folds.values())]
    print("| held-out speaker | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for speaker, wers in folds.items():
        print(f"| {speaker} | " + " | ".join(f"{wers[c]:.2f}" if c in wers else "" for c in columns) + " |")
    cells = [mean_sd([f[c] for f in folds.values() if c in f]) for c in columns]
    print(f"| mean ± sd ({len(folds)} folds) | " + " | ".join(cells) + " |\n")
    print("| student - student_ctc (points) | per fold (paired bootstrap p) | mean ± sd | lower in "
          "| mean over folds [95% CI], p |")
    print("|---|---|---:|---:|---:|")
    for system in [s for s in systems if s not in (TEACHER, BASELINE)]:
        for variant in VARIANTS:
            a, b = system + variant, BASELINE + variant
            with_both = [d for d in dirs if a in folds[d.name] and b in folds[d.name]]
            if not with_both:
                continue
            cells, diffs = [], []
            for d in with_both:
                diff = folds[d.name][a] - folds[d.name][b]
                p_fold = {(c["a"], c["b"]): c["p"] for c in reports[d.name]["comparisons"]
                          if c["test_set"] == TEST_SET}
                diffs.append(diff)
                cells.append(f"{d.name} {diff:+.2f} ({p_fold.get((a, b), float('nan')):.3f})")
            mean, (low, high), p = pooled_test(with_both, a, b)
            print(f"| {a} | {', '.join(cells)} | {mean_sd(diffs)} | {sum(x < 0 for x in diffs)} of "
                  f"{len(diffs)} | {mean:+.2f} [{low:+.2f}, {high:+.2f}], p = {p:.3f} |")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "exp/fsdd_speaker_adapt"))
