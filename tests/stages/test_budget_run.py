"""Distil to a budget through the plan and the real CLI: candidates from ``target``, dropped before
training on their bounds, nothing changed when no limit is set, one-line errors, and one smoke run
whose target.json names a winner that meets the budget and is the best on dev."""

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict
from test_pipeline import asr_kd, trained_systems

from asr_kd.errors import ConfigError
from asr_kd.scoring.target import check_contract
from asr_kd.stages.plan import Plan

CONF = Path(__file__).resolve().parents[2] / "conf"
BUDGET = ("target.size_mb=0.5", "target.latency_ms=400")
KEPT = ["cand_conformer_stream_tiny_c8", "cand_conformer_stream_tiny_c4"]  # 0.34M params: int8 may fit


def plan(*overrides: str) -> Plan:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return Plan(compose("config", overrides=list(overrides)))


def units(p: Plan) -> dict[str, str]:
    names = ["prepare", "features", "teacher", *p.cache_units(), *(f"student/{n}" for n in p.systems),
             *(f"decode/{n}" for n in p.decoded), *(f"export/{n}" for n in p.exported), "score"]
    return {u: p.fingerprint(u) for u in names}


@pytest.mark.parametrize("extra", [(), ("target.threads=4", "target.chunks=[8]")])
def test_without_a_limit_the_plan_is_the_one_without_a_target_block(extra):
    with_block = plan("recipe=smoke", "study=smoke", *extra)
    cfg = with_block.cfg.copy()
    with open_dict(cfg):
        del cfg["target"]
    without = Plan(cfg)
    assert with_block.target is None and with_block.candidates == []
    assert list(with_block.systems) == list(without.systems) and with_block.exported == without.exported
    assert units(with_block) == units(without)


def test_a_budget_adds_candidates_trained_like_student_kd_and_drops_hopeless_ones_before_training():
    base, budget = plan(), plan(*BUDGET)
    assert list(budget.systems) == ["student_ctc", "student_kd", *KEPT]
    assert budget.exported == ["student_kd", *KEPT]
    dropped = {c.name: c.dropped for c in budget.candidates if c.dropped}
    assert dropped["cand_conformer_stream_tiny_c16"] == "latency_ms 665 > 400 ms"
    assert "size_mb >= 0.748 (params x 1 byte, int8) > 0.5 MB" in dropped["cand_conformer_stream_small_c4"]
    assert len(dropped) == 4
    kd, cand = budget.systems["student_kd"], budget.systems["cand_conformer_stream_tiny_c4"]
    shared = ("objective", "splits", "cache", "train")
    assert [getattr(cand, k) for k in shared] == [getattr(kd, k) for k in shared]
    assert cand.student["model"]["chunk_frames"] == 4 and cand.student["model"]["dynamic_chunks"] is None
    assert cand.student["model"]["dropout"] == 0.0  # the recipe's student_overrides reach candidates
    for unit in ("student/student_ctc", "student/student_kd", "export/student_kd"):  # baselines untouched
        assert budget.fingerprint(unit) == base.fingerprint(unit)
    assert budget.fingerprint("score") != base.fingerprint("score")
    hours = plan(*BUDGET, "target.max_hours=0.1")  # 4,000 steps x 0.073 s = 292 s: one fits in 360 s
    assert [c.name for c in hours.candidates if c.dropped is None] == KEPT[:1]


@pytest.mark.parametrize("override,message", [
    ("target.size_mb=-1", "target: size_mb must be > 0 (null: no limit), got -1"),
    ("target.students=[nope]", "target.students: student has no option 'nope'"),
    ("target.like=nobody", "target.like: candidates are trained like a system of the run"),
    ("target.latency_ms=100", "target: no candidate can meet latency_ms <= 100 ms (before training"),
    ("target.size_mb=abc", "target.size_mb: Value 'abc' of type 'str' could not be converted to Float"),
])
def test_bad_target_values_fail_at_start_in_one_line(override, message):
    with pytest.raises(ConfigError) as e:
        plan("target.max_hours=10", override)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_smoke_run_to_a_budget_names_a_winner_that_meets_it_and_is_best_on_dev(tmp_path):
    proc = asr_kd("stage=all", "recipe=smoke", f"exp_dir={tmp_path}", *BUDGET, "decode=greedy",
                  "test_sets=[test_seen]", "export.check_utterances=0")
    assert trained_systems(proc) == {"teacher", "student_ctc", "student_kd", *KEPT}
    logged = proc.stdout + proc.stderr
    assert "cand_conformer_stream_small_c8 dropped before training: size_mb >= 0.748" in logged
    outcome = json.loads((tmp_path / "target.json").read_text())
    check_contract(outcome)
    rows = {r["name"]: r for r in outcome["candidates"]}
    assert {n for n, r in rows.items() if r["status"] != "dropped"} == set(KEPT)
    winner = outcome["winner"]
    assert winner is not None and winner["size_mb"] <= 0.5 and winner["latency_ms"] <= 400
    met = [r for r in rows.values() if r["status"] == "met"]
    assert winner["dev_wer"] == min(r["dev_wer"] for r in met)
    graph = tmp_path / winner["export_dir"] / winner["file"]
    assert graph.stat().st_size / 1e6 == pytest.approx(winner["size_mb"])
    log = [json.loads(line) for line in (tmp_path / "models" / winner["name"] / "train_log.jsonl").open()]
    assert winner["dev_wer"] == [r["dev_wer"] for r in log if "dev_wer" in r][-1]  # dev, never a test set
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["target"]["winner"]["name"] == winner["name"]
    assert f"target: {winner['name']}" in (tmp_path / "report.md").read_text()
    assert OmegaConf.load(tmp_path / "stamps/score.json")["settings"]["target"]["size_mb"] == 0.5
