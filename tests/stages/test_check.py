"""The pre-flight check (``stage=check``): each warning fires when its condition holds and not
otherwise, on synthetic files in an experiment directory; ``check.json`` holds the facts; the
projection lists the units not up to date and no others; a CLI run probes an untrained baseline;
``stage=all`` goes on when the check fails."""

import json
import logging
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from test_pipeline import asr_kd

import asr_kd.stages as stages
from asr_kd.distill.cache import shard_name, write_index
from asr_kd.paths import ExpPaths
from asr_kd.stages import check
from asr_kd.stages.plan import Plan
from asr_kd.utils import write_json, write_jsonl

CONF = str(Path(__file__).resolve().parents[2] / "conf")
NOT_BETTER = "the teacher is not better than the student on dev"


def config(exp: Path, *overrides: str):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose("config", overrides=["recipe=smoke", f"exp_dir={exp}", *overrides])


def dev_wer(exp: Path, model: str, wer: float, step: int = 100) -> None:
    write_jsonl(ExpPaths(exp).model_dir(model) / "train_log.jsonl",
                [{"step": step // 2, "dev_wer": 0.9}, {"step": step, "loss": 1.0},
                 {"step": step, "dev_wer": wer}])


def manifest(exp: Path, split: str, count: int, seconds: float = 2.0) -> None:
    write_jsonl(ExpPaths(exp).manifest(split), [
        {"id": f"{split}-{i}", "audio": f"{i}.wav", "duration": seconds,
         "text": None if split == "unlabeled" else "a"} for i in range(count)])


def stamp(exp: Path, plan: Plan, unit: str) -> None:
    write_json(ExpPaths(exp).stamp(unit), {"fingerprint": plan.fingerprint(unit)})


def _teacher_vs_student(exp: Path, *overrides: str) -> dict:
    cfg = config(exp, *overrides)
    return check.teacher_vs_student(cfg, Plan(cfg), ExpPaths(exp), cfg.check.margin, 0)


def test_teacher_not_clearly_better_warns(tmp_path):
    dev_wer(tmp_path, "teacher", 0.139)  # the demo's seen voices: 10% better, relative
    dev_wer(tmp_path, "student_ctc", 0.154, step=4000)
    found = _teacher_vs_student(tmp_path)
    assert found["teacher_wer"] == 0.139 and found["student_wer"] == 0.154 and found["student_steps"] == 4000
    assert found["clearly_better"] is False and not found["probe"]
    assert found["warnings"] == [f"{NOT_BETTER}: a stronger teacher or untranscribed audio is needed"]
    assert _teacher_vs_student(tmp_path, "check.margin=0.05")["warnings"] == []  # the margin is the setting


def test_teacher_clearly_better_does_not_warn(tmp_path):
    dev_wer(tmp_path, "teacher", 0.10)
    dev_wer(tmp_path, "student_ctc", 0.154)
    found = _teacher_vs_student(tmp_path)
    assert found["clearly_better"] is True and found["warnings"] == []


def test_no_teacher_yet_is_said_not_warned(tmp_path):
    found = _teacher_vs_student(tmp_path)
    assert found["clearly_better"] is None and found["warnings"] == [] and "stage=teacher" in found["note"]


def _offset(exp: Path, delay_ms: float | None, *overrides: str) -> dict:
    if delay_ms is not None:
        write_jsonl(ExpPaths(exp).decode("student_ctc", "test_seen"),
                    [{"id": "x", "ref": "a", "hyp": "a"}, {"summary": {"symbol_delay_ms": delay_ms}}])
    cfg = config(exp, *overrides)
    return check.emission_offset(cfg, Plan(cfg), ExpPaths(exp))


def test_offset_not_covered_by_the_shift_warns_naming_the_fix(tmp_path):
    found = _offset(tmp_path, 85.0)  # 85 ms / 40 ms frames: 2 frames; smoke's student_kd: kd, shift 0
    assert found["offset_frames"] == 2 and found["frame_ms"] == 40
    assert found["systems"]["student_kd"] == {"shift_frames": 0, "delay_window": 0, "aligned": False}
    assert found["warnings"] == ["targets not aligned for a 320 ms student: measured offset 2 frames, "
                                 "student_kd shifts 0 (set distill.shift_frames=2 or distill.delay_window=2)"]


def test_offset_covered_by_the_shift_does_not_warn(tmp_path):
    found = _offset(tmp_path, 85.0, "distill.shift_frames=2")
    assert found["systems"]["student_kd"]["aligned"] and found["warnings"] == []


def test_offset_not_measured_is_said_and_hard_labels_need_no_shift(tmp_path):
    assert "not measured yet" in _offset(tmp_path, None)["note"]
    found = _offset(tmp_path, 85.0, "distill=pseudo")  # alpha 0: no frame-level targets
    assert found["systems"] == {} and found["warnings"] == []


@pytest.mark.parametrize(("unlabeled", "splits", "better", "warns"), [
    (0, "[train]", False, "add some: data.unlabeled"),
    (30, "[train]", False, "no system trains on it"),
    (30, "[train,unlabeled]", False, None),
    (0, "[train]", True, None),
])
def test_untranscribed_audio_warns_only_when_none_is_used_and_the_teacher_is_not_better(
        tmp_path, unlabeled, splits, better, warns):
    manifest(tmp_path, "train", 60, 3.0)
    if unlabeled:
        manifest(tmp_path, "unlabeled", unlabeled, 6.0)
    cfg = config(tmp_path, f"++systems.student_kd.splits={splits}")
    found = check.untranscribed(Plan(cfg), ExpPaths(tmp_path), better)
    assert found["train"] == {"utterances": 60, "hours": pytest.approx(0.05)}
    assert found["unlabeled"]["utterances"] == unlabeled
    assert found["systems"] == (["student_kd"] if "unlabeled" in splits else [])
    assert [warns in w for w in found["warnings"]] == ([True] if warns else [])


def test_partial_cache_names_what_it_holds_and_a_done_one_does_not_warn(tmp_path):
    cfg = config(tmp_path)
    plan, paths = Plan(cfg), ExpPaths(tmp_path)
    folder = paths.cache_dir("teacher_k16", "train")
    write_json(folder / "meta.json", {"k": 16})
    write_index(folder, [["a", "b"], ["c"]], 1)
    meta = json.loads((folder / "index.json").read_text())["meta"]
    write_json(folder / f"{shard_name(0)}.json", {"utts": {"a": [0, 1], "b": [1, 1]}, "meta": meta})
    found = check.cache_coverage(plan, paths)
    assert found["units"] == {"cache/teacher_k16/train": {"done": False, "utterances": 2, "expected": 3}}
    assert found["warnings"] == ["cache/teacher_k16/train: 2 of 3 utterances: run stage=cache"]
    stamp(tmp_path, plan, "cache/teacher_k16/train")
    assert check.cache_coverage(plan, paths)["warnings"] == []


def test_run_writes_check_json_and_projects_only_the_units_not_up_to_date(tmp_path, capsys):
    cfg = config(tmp_path, "check.bench_steps=1")
    plan = Plan(cfg)
    for split, count in (("train", 60), ("dev", 8), ("test_seen", 8), ("test_unseen", 8)):
        manifest(tmp_path, split, count)
    for unit in ("prepare", "features", "teacher"):
        stamp(tmp_path, plan, unit)
    write_json(ExpPaths(tmp_path).stamp("student/student_ctc"), {"fingerprint": "made for other settings"})
    dev_wer(tmp_path, "teacher", 0.5)
    dev_wer(tmp_path, "student_ctc", 0.5)
    ExpPaths(tmp_path).model_dir("student_kd").mkdir(parents=True)
    (ExpPaths(tmp_path).model_dir("student_kd") / "ckpt-00000015.pt").write_bytes(b"")  # a killed run
    facts = check.run(cfg)
    assert json.loads((tmp_path / "check.json").read_text()) == facts
    projected = facts["projection"]["units"]
    assert list(projected) == ["cache/teacher_k16/train", "student/student_ctc", "student/student_kd",
                               "decode/teacher", "decode/student_ctc", "decode/student_kd",
                               "export/student_kd", "score"]
    assert facts["projection"]["done"] == ["prepare", "features", "teacher"]
    assert all(u["seconds"] > 0 for u in projected.values())
    total = sum(u["seconds"] for u in projected.values())
    assert facts["projection"]["total_s"] == pytest.approx(total, abs=0.2)
    assert "20 steps x" in projected["student/student_ctc"]["how"]  # smoke: train.student.steps=20
    assert "5 steps (resumes at step 15) x" in projected["student/student_kd"]["how"]
    assert NOT_BETTER in " ".join(facts["warnings"]) and "cache/teacher_k16/train: 0 of 60" in " ".join(
        facts["warnings"])
    screen = capsys.readouterr().out
    assert "student/student_kd" in screen and f"{len(facts['warnings'])} warning(s)" in screen


def test_a_failing_part_is_reported_and_the_others_go_on(tmp_path, caplog):
    (tmp_path / "models/teacher").mkdir(parents=True)
    (tmp_path / "models/teacher/train_log.jsonl").write_text("{not json\n")
    manifest(tmp_path, "train", 10)
    with caplog.at_level(logging.WARNING):
        facts = check.run(config(tmp_path, "check.bench_steps=1"))
    assert "error" in facts["teacher_vs_student"] and "units" in facts["caches"]
    assert "check: teacher vs student failed" in caplog.text


def test_stage_all_goes_on_when_the_check_fails(tmp_path, monkeypatch, caplog):
    ran = []

    def broken(cfg):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(check, "run", broken)
    monkeypatch.setattr(stages, "PIPELINE", ("prepare",))
    monkeypatch.setattr("asr_kd.stages.prepare.run", lambda cfg: ran.append("prepare"))
    with caplog.at_level(logging.WARNING):
        stages.run_all(config(tmp_path))
    assert ran == ["prepare"]
    assert "pre-flight check failed (RuntimeError: disk on fire); the run goes on" in caplog.text


def test_cli_probes_an_untrained_baseline_and_help_lists_the_stage(tmp_path):
    for stage in ("prepare", "features"):
        asr_kd(f"stage={stage}", "recipe=smoke", f"exp_dir={tmp_path}")
    dev_wer(tmp_path, "teacher", 0.3)
    proc = asr_kd("stage=check", "recipe=smoke", f"exp_dir={tmp_path}", "check.probe_steps=3",
                  "check.bench_steps=1")
    facts = json.loads((tmp_path / "check.json").read_text())
    duel = facts["teacher_vs_student"]
    assert duel["probe"] and duel["student_steps"] == 3 and duel["student_wer"] >= 0
    assert "(a probe at 3 steps)" in proc.stdout
    assert not (tmp_path / "models/student_ctc").exists()  # the probe trains in a temporary folder
    assert not (tmp_path / "stamps/student").exists()
    assert list(facts["projection"]["units"])[0] == "teacher"
    assert "prepare" in facts["projection"]["done"] and "features" in facts["projection"]["done"]
    assert "check" in asr_kd("--help").stdout.split("Config groups")[0]
