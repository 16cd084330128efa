"""recipes/fsdd/summarize_folds.py: the table over cross-speaker folds and its pooled paired test."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "recipes" / "fsdd" / "summarize_folds.py"


def _load():
    spec = importlib.util.spec_from_file_location("summarize_folds", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fold(root: Path, name: str, hyps: dict[str, list[str]], refs: list[str]) -> None:
    """A fold's experiment directory as score leaves it: report.json and decode/<system>/test.jsonl."""
    fold = root / name
    wers = {}
    for system, lines in hyps.items():
        rows = [{"id": f"u{i}", "ref": r, "hyp": h} for i, (r, h) in enumerate(zip(refs, lines, strict=True))]
        rows.append({"summary": {}})
        (fold / "decode" / system).mkdir(parents=True)
        (fold / "decode" / system / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        errors = sum(r != h for r, h in zip(refs, lines, strict=True))  # one-word utterances
        wers[system] = {"wer": errors / len(refs)}
    comparisons = [{"test_set": "test", "a": "student_kd", "b": "student_ctc", "p": 0.5}]
    trained = {system: {} for system in hyps}  # report.json "systems": the trained models
    report = {"test_sets": {"test": wers}, "systems": trained, "comparisons": comparisons}
    (fold / "report.json").write_text(json.dumps(report))


def test_pooled_test_finds_a_consistent_gain_and_not_a_tie(tmp_path, capsys):
    summary = _load()
    refs = ["one", "two", "three", "four"] * 25
    for name, wrong in (("alice", 30), ("bob", 40)):
        ctc = [("nine" if i < wrong else r) for i, r in enumerate(refs)]
        kd = [("nine" if i < wrong - 20 else r) for i, r in enumerate(refs)]
        _fold(tmp_path, name, {"student_ctc": ctc, "student_kd": kd, "student_kd_plain": list(ctc)}, refs)
    folds = sorted(tmp_path.iterdir())
    mean, (low, high), p = summary.pooled_test(folds, "student_kd", "student_ctc")
    assert mean == pytest.approx(-20.0) and high < 0 and p < 0.01
    mean, (low, high), p = summary.pooled_test(folds, "student_kd_plain", "student_ctc")
    assert mean == 0 and low == high == 0 and p == 1.0
    summary.main(tmp_path)
    out = capsys.readouterr().out
    assert "| alice | 30.00 | 10.00 |" in out
    assert "| mean ± sd (2 folds) | 35.00 ± 7.07 | 15.00 ± 7.07 |" in out
    assert "alice -20.00 (0.500), bob -20.00 (0.500) | -20.00 ± 0.00 | 2 of 2 | -20.00 [" in out
