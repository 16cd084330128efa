"""stage=compare: several runs' reports as mean ± sd, and with ``folds=true`` (cross-validation folds,
disjoint test sets) each comparison's mean over the folds tested by a stratified paired bootstrap."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from asr_kd.stages.compare import run as compare


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
        wers[system] = {"wer": errors / len(refs), "cer": 0.0, "rtf": 0.01}
    comparisons = [{"test_set": "test", "a": a, "b": "student_ctc", "p": 0.5, "ci95": [-0.3, -0.1],
                    "delta": wers[a]["wer"] - wers["student_ctc"]["wer"]}
                   for a in ("student_kd", "student_kd_plain")]
    report = {"test_sets": {"test": wers}, "systems": {s: {} for s in hyps}, "comparisons": comparisons}
    (fold / "report.json").write_text(json.dumps(report))


def _cfg(tmp_path: Path, runs: list[Path], folds: bool, sweep: str | None = None):
    return OmegaConf.create({"runs": [str(r) for r in runs], "folds": folds, "exp_dir": str(tmp_path / "cmp"),
                             "score": {"resamples": 500, "seed": 0}, "sweep": sweep})


def test_folds_pool_a_consistent_gain_and_not_a_tie(tmp_path):
    refs = ["one", "two", "three", "four"] * 25
    for name, wrong in (("alice", 30), ("bob", 40)):
        ctc = [("nine" if i < wrong else r) for i, r in enumerate(refs)]
        kd = [("nine" if i < wrong - 20 else r) for i, r in enumerate(refs)]
        _fold(tmp_path, name, {"student_ctc": ctc, "student_kd": kd, "student_kd_plain": list(ctc)}, refs)
    runs = [tmp_path / "alice", tmp_path / "bob"]
    compare(_cfg(tmp_path, runs, folds=True))
    agg = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    kd, plain = agg["comparisons"]
    assert kd["pooled"]["delta"] == pytest.approx(-0.2)
    assert kd["pooled"]["ci95"][1] < 0 and kd["pooled"]["p"] < 0.01
    assert plain["pooled"]["delta"] == 0 and plain["pooled"]["ci95"] == [0, 0] and plain["pooled"]["p"] == 1.0
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert "| student_ctc | 35.00 ± 7.07 | 2 | 30.00 | 40.00 |" in md
    assert f"{runs[0]} -20.00 (0.500), {runs[1]} -20.00 (0.500) | -20.00 ± 0.00 | 2 of 2 |" in md
    assert "| -20.00 [" in md

    compare(_cfg(tmp_path, runs, folds=False))  # seeds of one test set: no pooled test
    agg = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert all("pooled" not in c for c in agg["comparisons"])


def test_folds_need_their_decodes(tmp_path):
    refs = ["one", "two"]
    _fold(tmp_path, "alice", {"student_ctc": refs, "student_kd": refs, "student_kd_plain": refs}, refs)
    (tmp_path / "alice" / "decode" / "student_kd" / "test.jsonl").unlink()
    with pytest.raises(Exception, match="has no decode .*student_kd"):
        compare(_cfg(tmp_path, [tmp_path / "alice"], folds=True))


def test_sweep_tabulates_each_students_dev_gain_against_the_teachers_gap(tmp_path):
    refs = ["one", "two"] * 10
    runs = []
    for name, teacher, kd in (("strong", 0.10, 0.15), ("weak", 0.40, 0.35)):
        _fold(tmp_path, name, {"student_ctc": refs, "student_kd": refs, "student_kd_plain": refs}, refs)
        report = json.loads((tmp_path / name / "report.json").read_text())
        report["systems"] = {"teacher": {"dev_wer": teacher}, "student_ctc": {"dev_wer": 0.30},
                             "student_kd": {"dev_wer": kd}, "student_kd_plain": {"dev_wer": None}}
        (tmp_path / name / "report.json").write_text(json.dumps(report))
        runs.append(tmp_path / name)
    compare(_cfg(tmp_path, runs, folds=False, sweep="student_ctc"))
    sweep = json.loads((tmp_path / "cmp" / "compare.json").read_text())["sweep"]
    strong, weak = (sweep["runs"][str(r)] for r in runs)
    assert strong["teacher_gap"] == pytest.approx(0.20)
    assert strong["gains"] == {"student_kd": pytest.approx(0.15)}
    assert weak["teacher_gap"] == pytest.approx(-0.10) and weak["gains"]["student_kd"] == pytest.approx(-0.05)
    assert f"| {runs[1]} | -10.00 | -5.00 |" in (tmp_path / "cmp" / "compare.md").read_text()
    assert (tmp_path / "cmp" / "compare_sweep.png").stat().st_size > 0
    with pytest.raises(ValueError, match="sweep: no run.s report.json has the dev WER"):
        compare(_cfg(tmp_path, runs, folds=False, sweep="nope"))
