"""End to end through the real CLI: ``asr-kd stage=all recipe=smoke study=smoke`` trains, decodes
and scores four systems in one call; re-running trains nothing; adding a system trains that one;
inputs made for other settings are refused; user errors are one line; sweeps get their own
exp_dir; files are readable as the umask allows."""

import json
import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from asr_kd.data.manifest import read_manifest
from asr_kd.distill.cache import CacheMismatchError
from asr_kd.distill.loss import FrameRateMismatchError
from asr_kd.distill.teacher_cache import CacheSpec, load_cache_teachers, open_cache
from asr_kd.models.bundle import load_bundle
from asr_kd.paths import ExpPaths

STUDY = ("student_ctc", "student_kd", "student_kd_k4", "student_kd_T1")  # conf/study/smoke.yaml
EXPORTED = {"student_kd_sherpa", "student_kd_sherpa_int8"}  # stage export (sherpa-onnx), the default
SYSTEMS = {"teacher", *STUDY, *(f"{s}_streaming" for s in STUDY), *EXPORTED}
LM_SYSTEMS = {"teacher_lm", *(f"{s}_lm" for s in STUDY)}  # decode=beam_lm, the default


def asr_kd(*args: str, check: bool = True, full_errors: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "asr_kd.cli", *args]
    env = (
        {**os.environ, "HYDRA_FULL_ERROR": "1"}
        if full_errors
        else {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    )
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def trained_systems(proc: subprocess.CompletedProcess) -> set[str]:
    """Names the training loop announced (``<name>: N steps on cpu ...``)."""
    names = set()
    for line in (proc.stdout + proc.stderr).splitlines():
        if " steps on " in line and "] - " in line:
            names.add(line.split("] - ", 1)[1].split(":")[0])
    return names


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> Path:
    exp = tmp_path_factory.mktemp("smoke")
    first = asr_kd("stage=all", "recipe=smoke", "study=smoke", f"exp_dir={exp}")
    assert trained_systems(first) == {"teacher", *STUDY}
    return exp


def test_report_json_contract(smoke):
    report = json.loads((smoke / "report.json").read_text())
    assert set(report["test_sets"]) == {"test_seen", "test_unseen"}
    for systems in report["test_sets"].values():
        assert set(systems) == SYSTEMS | LM_SYSTEMS
        for name, r in systems.items():
            assert {"wer", "cer", "params", "size_mb", "rtf"} <= set(r)
            assert isinstance(r["wer"], float) and r["wer"] >= 0 and r["rtf"] > 0
            assert isinstance(r["params"], int)
            graph = {"student_kd_sherpa": "model.onnx", "student_kd_sherpa_int8": "model.int8.onnx"}.get(name)
            size = 4 * r["params"] if graph is None else (smoke / "export/student_kd" / graph).stat().st_size
            assert r["size_mb"] == pytest.approx(size / 1e6)  # fp32 weights, or the exported graph's file
        assert systems["student_kd_sherpa_int8"]["size_mb"] < systems["student_kd_sherpa"]["size_mb"]
        assert systems["student_kd_sherpa"]["peak_rss_mb"] > 0
        for name in (*STUDY, *(f"{s}_streaming" for s in STUDY)):  # greedy decodes, offline and streamed
            assert {"symbol_delay_ms", "symbol_offset_frames"} <= set(systems[name])
            offset = systems[name]["symbol_offset_frames"]
            assert offset is None or isinstance(offset, int)
    seen = report["test_sets"]["test_seen"]
    assert seen["student_kd"]["params"] < seen["teacher"]["params"]
    assert report["systems"]["teacher"]["dev_wer"] >= 0 and report["systems"]["student_kd"]["dev_wer"] >= 0
    # each system's resolved config is recorded
    assert report["systems"]["student_kd_k4"]["config"]["cache"] == "teacher_k4"
    assert report["systems"]["student_kd_T1"]["config"]["objective"]["temperature"] == 1.0
    assert report["systems"]["student_ctc"]["config"]["objective"]["_target_"].endswith("CTCOnly")
    assert {c["b"] for c in report["comparisons"]} == {
        "student_ctc",
        "student_ctc_streaming",
        "student_ctc_lm",
    }
    assert (smoke / "report.md").read_text().startswith("# asr-kd report")
    assert (smoke / "report.png").stat().st_size > 0


def test_every_stage_left_its_artefacts(smoke):
    paths = ExpPaths(smoke)
    for split in ("train", "dev", "test_seen", "test_unseen", "unlabeled"):
        assert paths.manifest(split).exists() and (paths.features(split) / "index.json").exists()
    assert all(u.text is None for u in read_manifest(paths.manifest("unlabeled")))  # untranscribed
    for name, k in (("teacher_k16", 16), ("teacher_k4", 4)):  # one cache per setting, side by side
        summary = json.loads((paths.cache_dir(name, "train") / "summary.json").read_text())
        assert summary["k"] == k and summary["bytes_per_frame"] <= 64
    hyps = [
        json.loads(line)
        for line in paths.decode("student_kd_streaming", "test_seen").read_text().splitlines()
    ]
    assert {"id", "ref", "hyp"} <= set(hyps[0]) and "summary" in hyps[-1]
    assert (paths.model_dir("teacher") / "train_log.jsonl").exists()


def test_rerun_trains_nothing_and_a_new_system_trains_alone(smoke):
    again = asr_kd("stage=all", "recipe=smoke", "study=smoke", f"exp_dir={smoke}")
    log = again.stdout + again.stderr
    assert trained_systems(again) == set()
    for unit in ("prepare", "features", "teacher", "cache/teacher_k4/train", "student/student_kd", "score"):
        assert f"{unit}: up to date" in log
    added = asr_kd(
        "stage=all",
        "recipe=smoke",
        "study=smoke",
        f"exp_dir={smoke}",
        "+distill@systems.student_kd_a02.objective=kd",
        "systems.student_kd_a02.objective.alpha=0.2",
    )
    assert trained_systems(added) == {"student_kd_a02"}
    assert "student_kd_a02" in json.loads((smoke / "report.json").read_text())["test_sets"]["test_seen"]
    changed = asr_kd("stage=student", "recipe=smoke", f"exp_dir={smoke}", "distill.temperature=3")
    assert trained_systems(changed) == {"student_kd"}  # the baseline does not depend on distill


def test_inputs_made_for_other_settings_are_refused_even_with_force(smoke):
    proc = asr_kd(
        "stage=student",
        "recipe=smoke",
        f"exp_dir={smoke}",
        "train.teacher.seed=1",
        "force=true",
        check=False,
        full_errors=False,
    )
    err = [line for line in proc.stderr.splitlines() if line.startswith("asr-kd:")]  # past the progress bars
    assert proc.returncode == 2 and len(err) == 1 and "Traceback" not in proc.stderr
    assert "cache/teacher_k16/train" in err[0] and "teacher: train.seed 0 -> 1" in err[0]
    assert "stage=teacher" in err[0]


def test_seeded_retraining_gives_the_same_weights(smoke):
    paths = ExpPaths(smoke)
    before = torch.load(paths.checkpoint("student_ctc"), weights_only=False)["state_dict"]
    asr_kd("stage=student", "recipe=smoke", f"exp_dir={smoke}", "force=true")
    after = torch.load(paths.checkpoint("student_ctc"), weights_only=False)["state_dict"]
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_cache_layout_change_rebuilds_instead_of_mixing(smoke, tmp_path):
    paths = ExpPaths(smoke)
    folder = paths.cache_dir("teacher_k16", "train")
    before = json.loads((folder / "summary.json").read_text())
    asr_kd("stage=cache", "recipe=smoke", f"exp_dir={smoke}", "cache.shard_utts=10")
    after = json.loads((folder / "summary.json").read_text())
    assert (
        after["utterances"] == before["utterances"] and after["bytes_per_frame"] == before["bytes_per_frame"]
    )
    assert len(list(folder.glob("shard-*.json"))) == -(-before["utterances"] // 10)
    asr_kd("stage=cache", "recipe=smoke", f"exp_dir={smoke}")  # back to the recipe's layout
    assert len(list(folder.glob("shard-*.json"))) == -(-before["utterances"] // 25)


def readme_line(start: str) -> list[str]:
    """The arguments of the README example that starts with ``start`` (comment dropped)."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    line = next(line for line in readme.splitlines() if line.startswith(start))
    return shlex.split(line.split(" #")[0])[1:]


def test_readme_sweep_line_gives_each_job_its_own_exp_dir(smoke):
    report = (smoke / "report.json").read_bytes()
    args = readme_line("asr-kd stage=student --multirun")
    proc = asr_kd(*args, "recipe=smoke", f"exp_dir={smoke}")
    swept = next(a for a in args if "," in a)
    key, values = swept.split("=")
    jobs = sorted(p.name for p in (smoke / "jobs").iterdir())
    assert jobs == sorted(f"{key}={v}" for v in values.split(",")), proc.stderr[-2000:]
    for job in jobs:
        assert ExpPaths(smoke / "jobs" / job).checkpoint("student_kd").exists()
    assert (smoke / "report.json").read_bytes() == report  # the shared directory is untouched


def test_user_errors_are_one_line_without_traceback(smoke, tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    cases = [
        (("stage=transcribe", f"audio={empty}", f"exp_dir={smoke}"), "empty file (0 bytes)"),
        (("stage=transcribe", f"audio={tmp_path}", f"exp_dir={smoke}"), "is a directory"),
        (("stage=teacher", "recipe=smoke", f"exp_dir={tmp_path / 'new'}"), "run `asr-kd stage=features"),
        (
            ("stage=student", "recipe=smoke", f"exp_dir={smoke}", "train.student.steps=abc"),
            "train.student.steps",
        ),
        (("stage=bogus", f"exp_dir={tmp_path}"), "valid stages: prepare, features, teacher, cache, student"),
    ]
    for args, message in cases:
        proc = asr_kd(*args, check=False, full_errors=False)
        err = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(err) == 1 and message in err[0], (args, proc.stderr[-2000:])
    # HYDRA_FULL_ERROR=1 still shows where it came from
    proc = asr_kd("stage=transcribe", f"audio={empty}", f"exp_dir={smoke}", check=False)
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_written_files_follow_the_umask(smoke):
    for path in (
        smoke / "report.json",
        ExpPaths(smoke).manifest("train"),
        ExpPaths(smoke).checkpoint("teacher"),
    ):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~_umask(), path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: The teacher config of a run whose teacher is trained here (models/teacher/model.pt).
OWN_TEACHER = OmegaConf.create({"checkpoint": None})


def single_k16() -> CacheSpec:
    """The recipe's cache (conf/cache/topk.yaml with recipe=smoke)."""
    return CacheSpec(name="teacher_k16", k=16, shard_utts=25, max_frames=20000, device="cpu",
                     teachers="single", folds=4, splits=("train",))


def test_student_with_another_frame_rate_is_refused(smoke):
    with pytest.raises(
        FrameRateMismatchError, match="every 20.0 ms, the teacher cache teacher_k16 every 40.0 ms"
    ):
        open_cache(ExpPaths(smoke), single_k16(), "train", student_subsampling=2, frame_shift_ms=10.0,
                   teachers=load_cache_teachers(OWN_TEACHER, ExpPaths(smoke), single_k16()))


def test_cache_of_another_teacher_is_refused(smoke):
    paths = ExpPaths(smoke)
    meta_path = paths.cache_dir("teacher_k16", "train") / "meta.json"
    original = meta_path.read_text()
    try:
        meta_path.write_text(original.replace(json.loads(original)["teacher_sha"], "0" * 16))
        with pytest.raises(CacheMismatchError, match="teacher_sha: cache has '0000000000000000'"):
            open_cache(paths, single_k16(), "train", student_subsampling=4, frame_shift_ms=10.0,
                       teachers=load_cache_teachers(OWN_TEACHER, paths, single_k16()))
    finally:
        meta_path.write_text(original)


def test_sequence_kd_trains_on_the_teachers_1best(smoke):
    from asr_kd.data.dataset import UtteranceDataset
    from asr_kd.distill.cache import PosteriorCache
    from asr_kd.distill.targets import CachedTargets
    from asr_kd.models.ctc import ctc_greedy

    paths = ExpPaths(smoke)
    teacher = load_bundle(paths.checkpoint("teacher"))
    targets = CachedTargets([PosteriorCache(paths.cache_dir("teacher_k16", "train"))], pseudo_labels="all")
    item = UtteranceDataset.from_exp(paths, "train", teacher.cmvn, teacher.tokenizer, targets)[0]
    with torch.no_grad():
        logits, lengths = teacher.model(item["feats"][None], torch.tensor([len(item["feats"])]))
    assert item["tokens"].tolist() == ctc_greedy(logits, lengths)[0]  # the teacher's 1-best, not the text
    run = asr_kd(
        "stage=student",
        "recipe=smoke",
        f"exp_dir={smoke}",
        "+distill@systems.student_seq.objective=kd",
        "systems.student_seq.objective.hard_targets=teacher",
    )
    assert "CTC targets of all utterances are the teacher's 1-best" in run.stdout + run.stderr
    assert paths.checkpoint("student_seq").exists()


def test_a_labelled_share_hides_the_rest_of_the_transcripts(smoke):
    from asr_kd.data.dataset import UtteranceDataset

    paths = ExpPaths(smoke)
    teacher = load_bundle(paths.checkpoint("teacher"))
    full = UtteranceDataset.from_exp(paths, "train", teacher.cmvn, teacher.tokenizer)
    half = UtteranceDataset.from_exp(paths, "train", teacher.cmvn, teacher.tokenizer, labelled=0.5)
    assert [u.id for u in half.utts] == [u.id for u in full.utts]
    n = round(len(full) / 2)
    assert [u.text for u in half.utts[:n]] == [u.text for u in full.utts[:n]]
    assert all(u.text is None for u in half.utts[n:]) and not half[n]["labelled"]
    only = UtteranceDataset.from_exp(paths, "train", teacher.cmvn, teacher.tokenizer, labelled=0.5,
                                     keep_untranscribed=False)
    assert [u.id for u in only.utts] == [u.id for u in full.utts[:n]]
    run = asr_kd("stage=student", "recipe=smoke", f"exp_dir={smoke}", "~systems",
                 "+systems.half_ctc={objective: ctc_only, labelled: 0.5}",
                 "+systems.half_pseudo={objective: pseudo, labelled: 0.5}")
    out = run.stdout + run.stderr
    assert "half_pseudo: CTC targets of untranscribed utterances are the teacher's 1-best" in out
    assert trained_systems(run) == {"half_ctc", "half_pseudo"}


def test_lm_pseudo_labels_are_decoded_once_per_system(smoke):
    run = asr_kd(
        "stage=student",
        "recipe=smoke",
        f"exp_dir={smoke}",
        "+distill@systems.student_plm.objective=kd_pseudo_lm",
        "systems.student_plm.objective.hard_targets=teacher",
    )
    out = run.stdout + run.stderr
    assert "teacher's 1-best from the cache (beam search, LM weight 1)" in out
    assert "student_plm: 60 pseudo-labels decoded with the LM" in out
    paths = ExpPaths(smoke)
    assert (paths.model_dir("student_plm") / "pseudo_lm" / "lm.arpa").exists()
    assert paths.checkpoint("student_plm").exists()


def test_lm_decoding_uses_the_train_words(smoke):
    paths = ExpPaths(smoke)
    lexicon = (paths.lm_dir / "lexicon.txt").read_text().splitlines()
    train_words = {w for u in read_manifest(paths.manifest("train")) for w in u.text.split()}
    assert {line.split()[0] for line in lexicon} == train_words
    assert (paths.lm_dir / "lm.arpa").read_text().startswith("\\data\\")
    report = json.loads((smoke / "report.json").read_text())
    for systems in report["test_sets"].values():  # each system's weight, tuned on dev
        assert {name for name, r in systems.items() if "lm_weight" in r} >= LM_SYSTEMS
        assert all(systems[name]["lm_weight"] in (0.5, 1, 2, 3, 4) for name in LM_SYSTEMS)
        assert all(systems[name]["blank_penalty"] in (0, 1, 2, 4) for name in LM_SYSTEMS)
    assert "LM weights (chosen on dev): teacher_lm " in (smoke / "report.md").read_text()
