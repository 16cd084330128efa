"""Distil to a budget, the pure part (asr_kd.scoring.target): bounds before training, the time budget,
early stopping's rule, and the selection on measured numbers that writes target.json."""

import pytest

from asr_kd.errors import ConfigError
from asr_kd.scoring.target import (
    Candidate,
    Measured,
    Target,
    bound_misses,
    check_contract,
    choose_candidates,
    dev_wers,
    hopeless,
    select,
    target_markdown,
)

DEFAULTS = {"size_mb": None, "latency_ms": None, "rtf": None, "threads": 1, "max_hours": None,
            "like": "student_kd", "students": ["conformer_stream_tiny"], "chunks": [4, 8],
            "int8": [False, True], "step_seconds": 0.07, "early_stop": 1.5}


def target(**changes) -> Target:
    return Target(**{**DEFAULTS, **changes})


def cand(name: str, params: int = 300_000, latency_ms: float = 345.0, chunk: int = 8) -> Candidate:
    return Candidate(name, "conformer_stream_tiny", chunk, params, latency_ms, 280.0)


def graphs(fp32_mb: float, int8_mb: float | None = None, latency_ms: float = 345.0, rtf: float = 0.01,
           int8_rtf: float | None = None) -> dict:
    out = {"fp32": {"decode": "x_sherpa", "size_mb": fp32_mb, "latency_ms": latency_ms, "rtf": rtf}}
    if int8_mb is not None:
        out["int8"] = {"decode": "x_sherpa_int8", "size_mb": int8_mb, "latency_ms": latency_ms,
                       "rtf": rtf if int8_rtf is None else int8_rtf}
    return out


def by_name(result: dict) -> dict[str, dict]:
    return {r["name"]: r for r in result["candidates"]}


def test_unset_target_is_inactive_and_threads_alone_do_not_set_it():
    assert not target().active and not target(threads=4).active
    assert target(size_mb=0.5).active and target(max_hours=1).active


@pytest.mark.parametrize("changes,message", [
    ({"size_mb": -1}, "size_mb must be > 0"), ({"latency_ms": 0}, "latency_ms must be > 0"),
    ({"early_stop": 0.5}, "early_stop is a ratio"), ({"chunks": []}, "at least one value"),
    ({"chunks": [0]}, "chunks are chunk_frames"), ({"threads": 0}, "threads must be > 0"),
])
def test_bad_values_are_refused_in_one_line(changes, message):
    with pytest.raises(ConfigError, match=message) as e:
        target(**changes)
    assert "\n" not in str(e.value)


def test_bounds_drop_a_latency_miss_and_only_clearly_too_big_sizes():
    t = target(size_mb=0.5, latency_ms=400)
    assert bound_misses(t, 300_000, 345) == []  # 1.2 MB in fp32, but int8 may meet it
    assert bound_misses(t, 300_000, 665) == ["latency_ms 665 > 400 ms"]
    assert "size_mb >= 0.6 (params x 1 byte, int8)" in bound_misses(t, 600_000, 345)[0]
    fp32_only = target(size_mb=0.5, int8=[False])
    assert "params x 4 byte, fp32" in bound_misses(fp32_only, 300_000, 345)[0]


def test_survivors_are_ordered_and_max_hours_keeps_what_fits():
    cands = [cand("small_c4", 700_000, 185, 4), cand("tiny_c8", 300_000), cand("tiny_c16", 300_000, 665, 16),
             cand("small_c8", 700_000)]
    chosen = choose_candidates(target(latency_ms=400, max_hours=600 / 3600), cands)
    assert [c.name for c in chosen] == ["small_c8", "small_c4", "tiny_c8", "tiny_c16"]
    assert [c.dropped is None for c in chosen] == [True, True, False, False]  # 280 s each: two fit in 600 s
    assert chosen[2].dropped == "max_hours (600 s): 280 s projected after 560 s"
    assert chosen[3].dropped == "latency_ms 665 > 400 ms"


def test_early_stop_rule_and_dev_wers_of_a_log():
    rows = [{"step": 25, "loss": 3.0}, {"step": 1000, "dev_wer": 0.5}, {"step": 2000, "dev_wer": 0.2}]
    assert dev_wers(rows) == {1000: 0.5, 2000: 0.2}
    assert hopeless(0.8, 0.5, 1.5) and not hopeless(0.7, 0.5, 1.5)
    assert not hopeless(0.9, None, 1.5) and not hopeless(0.9, 0.1, None)


def test_each_limit_met_or_missed_on_measured_numbers():
    t = target(size_mb=2.0, latency_ms=400, rtf=0.05, int8=[False])
    cands = [cand("ok"), cand("big"), cand("slow"), cand("late", latency_ms=345)]
    measured = {"ok": Measured(0.3, None, graphs(1.5)), "big": Measured(0.1, None, graphs(2.5)),
                "slow": Measured(0.1, None, graphs(1.5, rtf=0.2)),
                "late": Measured(0.1, None, graphs(1.5, latency_ms=500))}
    rows = by_name(select(t, cands, measured))
    assert rows["ok"]["status"] == "met" and rows["ok"]["graph"] == "fp32"
    assert rows["big"]["status"] == "missed" and "size_mb 2.5 > 2 MB" in rows["big"]["reason"]
    assert "rtf 0.2 > 0.05" in rows["slow"]["reason"] and "latency_ms 500 > 400" in rows["late"]["reason"]


def test_int8_rescues_a_size_miss_and_fp32_is_kept_when_it_fits():
    t = target(size_mb=0.5)
    result = select(t, [cand("a"), cand("b")], {"a": Measured(0.2, None, graphs(1.4, 0.45)),
                                                 "b": Measured(0.3, None, graphs(0.4, 0.2))})
    rows = by_name(result)
    assert (rows["a"]["graph"], rows["a"]["size_mb"]) == ("int8", 0.45)
    assert rows["b"]["graph"] == "fp32"
    assert result["winner"]["name"] == "a" and result["winner"]["file"] == "model.int8.onnx"
    assert "fp32 graph misses" in result["winner"]["why"]
    no_int8 = select(target(size_mb=0.5, int8=[False]), [cand("a")],
                     {"a": Measured(0.2, None, graphs(1.4, 0.45))})
    assert no_int8["winner"] is None and "fp32: size_mb 1.4 > 0.5 MB" in no_int8["candidates"][0]["reason"]


def test_best_on_dev_among_feasible_wins_and_stopped_or_dropped_never_do():
    t = target(size_mb=1.0)
    cands = [cand("best_but_big"), cand("good"), cand("worse"), cand("stopped"),
             Candidate("gone", "conformer_stream_small", 8, 900_000, 345, 1.0, "latency_ms 665 > 400 ms")]
    measured = {"best_but_big": Measured(0.05, None, graphs(4.0, 1.2)),
                "good": Measured(0.2, None, graphs(0.9)), "worse": Measured(0.3, None, graphs(0.5)),
                "stopped": Measured(0.01, "dev WER 90 % at step 1000 > 1.5 x good's", graphs(0.5))}
    result = select(t, cands, measured)
    rows = by_name(result)
    assert result["winner"]["name"] == "good" and result["winner"]["dev_wer"] == 0.2
    assert rows["stopped"]["status"] == "stopped" and rows["gone"]["status"] == "dropped"
    assert rows["best_but_big"]["status"] == "missed"
    assert "## Distil to a budget" in target_markdown(result)[0]


def test_ties_on_dev_go_to_the_smaller_graph_then_lower_latency_then_name():
    t = target(size_mb=1.0)
    measured = {"b": Measured(0.2, None, graphs(0.8, latency_ms=185)), "a": Measured(0.2, None, graphs(0.8)),
                "c": Measured(0.2, None, graphs(0.9, latency_ms=185))}
    assert select(t, [cand("a"), cand("b"), cand("c")], measured)["winner"]["name"] == "b"
    same = {n: Measured(0.2, None, graphs(0.8)) for n in "ba"}
    assert select(t, [cand("b"), cand("a")], same)["winner"]["name"] == "a"


def test_no_feasible_candidate_gives_one_line_and_no_winner():
    result = select(target(size_mb=0.1), [cand("a"), cand("b")],
                    {"a": Measured(0.2, None, graphs(1.4, 0.45))})
    assert result["winner"] is None
    assert result["message"].startswith("target: no candidate meets size_mb <= 0.1 MB (1 missed, 1 absent)")
    assert "\n" not in result["message"]
    check_contract(result)


def test_the_contract_refuses_a_winner_that_did_not_meet_the_budget():
    result = select(target(size_mb=1.0), [cand("a")], {"a": Measured(0.2, None, graphs(0.5))})
    check_contract(result)
    bad = {**result, "candidates": [{**result["candidates"][0], "status": "missed"}]}
    with pytest.raises(ValueError, match="not one of the met candidates"):
        check_contract(bad)
    with pytest.raises(ValueError, match="keys"):
        check_contract({**result, "extra": 1})
