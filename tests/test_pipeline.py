"""End to end: ``asr-kd stage=all recipe=smoke`` through the real CLI, then skip/redo behaviour
and the refusals that guard distillation (wrong frame rate, stale cache)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from asr_kd.data.manifest import read_manifest
from asr_kd.distill.loss import FrameRateMismatchError
from asr_kd.paths import ExpPaths

SYSTEMS = {"teacher", "student_ctc", "student_kd", "student_ctc_streaming", "student_kd_streaming"}
LM_SYSTEMS = {"teacher_lm", "student_ctc_lm", "student_kd_lm"}  # decode=beam_lm, the default


def asr_kd(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "asr_kd.cli", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HYDRA_FULL_ERROR": "1"})
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> Path:
    exp = tmp_path_factory.mktemp("smoke")
    asr_kd("stage=all", "recipe=smoke", f"exp_dir={exp}")
    return exp


def test_report_json_contract(smoke):
    report = json.loads((smoke / "report.json").read_text())
    assert set(report["test_sets"]) == {"test_seen", "test_unseen"}
    for systems in report["test_sets"].values():
        assert set(systems) == SYSTEMS | LM_SYSTEMS
        for r in systems.values():
            assert {"wer", "cer", "params", "size_mb", "rtf"} <= set(r)
            assert isinstance(r["wer"], float) and r["wer"] >= 0 and r["rtf"] > 0
            assert isinstance(r["params"], int) and r["size_mb"] == pytest.approx(4 * r["params"] / 1e6)
    seen = report["test_sets"]["test_seen"]
    assert seen["student_kd"]["params"] < seen["teacher"]["params"]
    assert (smoke / "report.md").read_text().startswith("# asr-kd report")
    assert (smoke / "report.png").stat().st_size > 0


def test_every_stage_left_its_artefacts(smoke):
    paths = ExpPaths(smoke)
    for split in ("train", "dev", "test_seen", "test_unseen"):
        assert paths.manifest(split).exists() and (paths.features(split) / "index.json").exists()
    summary = json.loads((paths.cache_dir / "summary.json").read_text())
    assert {"utterances", "frames", "bytes_per_frame", "size_bytes", "k", "x_realtime"} <= set(summary)
    assert summary["k"] == 16 and summary["bytes_per_frame"] <= 64
    hyps = [
        json.loads(line)
        for line in paths.decode("student_kd_streaming", "test_seen").read_text().splitlines()
    ]
    assert {"id", "ref", "hyp"} <= set(hyps[0]) and "summary" in hyps[-1]
    assert (paths.model_dir("teacher") / "train_log.jsonl").exists()


def test_rerun_skips_and_upstream_change_redoes_downstream(smoke):
    again = asr_kd("stage=all", "recipe=smoke", f"exp_dir={smoke}")
    log = again.stdout + again.stderr
    for stage in ("prepare", "features", "teacher", "cache", "student/student_kd", "score"):
        assert f"{stage}: up to date" in log
    changed = asr_kd("stage=student", "recipe=smoke", f"exp_dir={smoke}", "distill.temperature=3")
    log = changed.stdout + changed.stderr
    assert "student/student_ctc: up to date" in log  # the baseline does not depend on distill.*
    assert "student/student_kd: settings or inputs changed" in log


def test_unknown_stage_lists_valid_names(tmp_path):
    proc = asr_kd("stage=bogus", f"exp_dir={tmp_path}", check=False)
    assert proc.returncode != 0
    assert "valid stages: prepare, features, teacher, cache, student, decode, score, all" in (
        proc.stdout + proc.stderr
    )


def test_stage_without_its_inputs_says_what_to_run(tmp_path):
    proc = asr_kd("stage=teacher", "recipe=smoke", f"exp_dir={tmp_path}", check=False)
    assert proc.returncode != 0 and "run `asr-kd stage=features" in proc.stdout + proc.stderr


def test_student_with_another_frame_rate_is_refused(smoke):
    from asr_kd.stages.student import open_cache

    with pytest.raises(FrameRateMismatchError, match="every 20.0 ms, the teacher cache every 40.0 ms"):
        open_cache(ExpPaths(smoke), student_subsampling=2, frame_shift_ms=10.0, k=16)


def test_cache_of_another_teacher_is_refused(smoke, tmp_path):
    from asr_kd.distill.cache import CacheMismatchError
    from asr_kd.stages.student import open_cache

    paths = ExpPaths(smoke)
    meta_path = paths.cache_dir / "meta.json"
    original = meta_path.read_text()
    try:
        meta_path.write_text(original.replace(json.loads(original)["teacher_sha"], "0" * 16))
        with pytest.raises(CacheMismatchError, match="teacher_sha: cache has '0000000000000000'"):
            open_cache(paths, student_subsampling=4, frame_shift_ms=10.0, k=16)
    finally:
        meta_path.write_text(original)


def test_sequence_kd_trains_on_the_teachers_1best(smoke):
    import torch

    from asr_kd.data.dataset import UtteranceDataset
    from asr_kd.distill.cache import PosteriorCache
    from asr_kd.models.bundle import load_bundle
    from asr_kd.models.ctc import ctc_greedy

    paths = ExpPaths(smoke)
    teacher = load_bundle(paths.checkpoint("teacher"))
    cache = PosteriorCache(paths.cache_dir)
    data = UtteranceDataset.from_exp(
        paths, "train", teacher.cmvn, teacher.tokenizer, cache, pseudo_labels=True
    )
    item = data[0]
    with torch.no_grad():
        logits, lengths = teacher.model(item["feats"][None], torch.tensor([len(item["feats"])]))
    assert item["tokens"].tolist() == ctc_greedy(logits, lengths)[0]  # the teacher's 1-best, not the text
    run = asr_kd(
        "stage=student",
        "recipe=smoke",
        f"exp_dir={smoke}",
        "student_systems=[student_seq]",
        "distill.sequence_kd=true",
    )
    assert "sequence-level KD" in run.stdout + run.stderr
    assert paths.checkpoint("student_seq").exists()


def test_lm_decoding_uses_the_train_words(smoke):
    paths = ExpPaths(smoke)
    lexicon = (paths.lm_dir / "lexicon.txt").read_text().splitlines()
    train_words = {w for u in read_manifest(paths.manifest("train")) for w in u.text.split()}
    assert {line.split()[0] for line in lexicon} == train_words
    assert (paths.lm_dir / "lm.arpa").read_text().startswith("\\data\\")
    report = json.loads((smoke / "report.json").read_text())
    for systems in report["test_sets"].values():  # each system's weight, tuned on dev
        assert {name for name, r in systems.items() if "lm_weight" in r} == LM_SYSTEMS
        assert all(systems[name]["lm_weight"] in (0.5, 1, 2, 3, 4) for name in LM_SYSTEMS)
    assert "LM weights: teacher_lm " in (smoke / "report.md").read_text()
