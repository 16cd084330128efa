"""The score stage and its report (asr_kd.scoring): per-utterance errors, report.json keys,
comparisons, verdicts in words, plots, provenance, and the across-runs ``compare`` tool."""

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from torch import nn

from asr_kd.paths import ExpPaths
from asr_kd.scoring.aggregate import aggregate_reports
from asr_kd.scoring.plots import curve_panels, pareto_front, plot_pareto, plot_training_curves
from asr_kd.scoring.provenance import git_state, stage_wall_times
from asr_kd.scoring.report import comparison_pairs, render_markdown, speaker_blocks, verdict
from asr_kd.scoring.wer import utterance_errors
from asr_kd.stages import compare as compare_stage
from asr_kd.stages import score as score_stage
from asr_kd.stages.plan import Plan
from asr_kd.utils import write_json, write_jsonl

CONF = Path(__file__).resolve().parents[2] / "conf"
VOCAB = "set an alarm for seven play some music turn off the lights call mom what time is it".split()
PNG = b"\x89PNG"


def config(**overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=[f"{k}={v}" for k, v in overrides.items()])


def hypothesis(rng, ref, rate):
    return " ".join("oops" if rng.random() < rate else w for w in ref.split())


def fake_experiment(root: Path, kd_rate: dict[str, float]) -> ExpPaths:
    """Manifests (12 speakers, 5 utterances each), decodes in decode.py's format, stamps, a training log.

    student_ctc errs on 30 % of words; student_kd at ``kd_rate[test set]``; the teacher at 5 %.
    """
    paths = ExpPaths(root)
    rng = np.random.default_rng(0)
    for test_set, rate in kd_rate.items():
        utts = [
            {
                "id": f"{test_set}-s{s}-{i}",
                "speaker": f"s{s}",
                "audio": "x.wav",
                "duration": 1.0,
                "text": " ".join(rng.choice(VOCAB, size=6)),
            }
            for s in range(12)
            for i in range(5)
        ]
        write_jsonl(paths.manifest(test_set), utts)
        for name, r in [
            ("teacher", 0.05),
            ("student_ctc", 0.3),
            ("student_kd", rate),
            ("student_ctc_streaming", 0.3),
            ("student_kd_streaming", rate),
            ("student_kd_onnx", rate),  # stage export's decode with the fp32 graph
        ]:
            rows = [
                {
                    "id": u["id"],
                    "ref": u["text"],
                    "hyp": hypothesis(rng, u["text"], r),
                    "duration": 1.0,
                    "compute_s": 0.01,
                    "wall_s": 0.01,
                }
                for u in utts
            ]
            if name == "student_kd":
                rows = rows[::-1]  # decode order need not be manifest order
            summary = {
                "rtf": 0.01 if name != "teacher" else 0.05,
                "latency_ms": 320.0 if name.endswith(("_streaming", "_onnx")) else None,
                **({"size_mb": 0.5, "peak_rss_mb": 61.0} if name.endswith("_onnx") else {}),
                **({"symbol_delay_ms": 80.0, "symbol_delay_p90_ms": 120.0} if name == "student_kd" else {}),
            }
            write_jsonl(paths.decode(name, test_set), [*rows, {"summary": summary}])
    write_jsonl(
        paths.model_dir("student_kd") / "train_log.jsonl",
        [
            {"step": 25, "loss": 3.0, "ctc": 2.0, "kd": 1.0, "lr": 1e-3, "grad_norm": 1.0},
            {"step": 50, "loss": 2.0, "ctc": 1.5, "kd": 0.5, "lr": 1e-3, "grad_norm": 1.0},
            {"step": 50, "dev_wer": 0.4, "dev_cer": 0.2},
        ],
    )
    return paths


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """A fake experiment scored by ``stage=score`` (models replaced by tiny modules for their sizes)."""
    root = tmp_path_factory.mktemp("exp")
    paths = fake_experiment(root, {"test_seen": 0.05, "test_unseen": 0.3})
    sizes = {"teacher": 40, "student_ctc": 10, "student_kd": 10}
    patch = pytest.MonkeyPatch()

    def fake_bundle(path):
        model = nn.Linear(sizes[Path(path).parent.name], 1, bias=False)
        model.streaming = Path(path).parent.name != "teacher"
        return SimpleNamespace(model=model)

    patch.setattr(score_stage, "load_bundle", fake_bundle)
    cfg = config(exp_dir=root, **{"score.compare": "[[teacher,student_kd]]", "score.resamples": 500})
    plan = Plan(cfg)
    for unit in plan.upstream("score"):  # the decodes, stamped as made for these settings
        write_json(paths.stamp(unit), {"fingerprint": plan.fingerprint(unit), "wall_s": 12.5})
    write_json(paths.stamp("prepare"), {"fingerprint": plan.fingerprint("prepare"), "wall_s": 12.5,
                                        "info": {"corpus_sha": "0123456789abcdef"}})
    score_stage.run(cfg)
    patch.undo()
    return paths, json.loads(paths.report_json.read_text())


def test_utterance_errors_count_substitutions_deletions_insertions():
    e = utterance_errors(
        ["u1", "u2"],
        ["set an alarm for seven", "Play Music!"],
        ["set alarm for seven please", "play some tunes"],
    )
    assert (e.sub.tolist(), e.dele.tolist(), e.ins.tolist(), e.words.tolist()) == (
        [0, 1],
        [1, 0],
        [1, 1],
        [5, 2],
    )
    assert e.wer == pytest.approx(4 / 7)
    assert "=== u1 ===" in e.alignment and "=== u2 ===" in e.alignment and "SENTENCE" not in e.alignment


def test_report_entries_keep_old_keys_and_gain_intervals_counts_and_speakers(scored):
    paths, report = scored
    assert set(report["test_sets"]) == {"test_seen", "test_unseen"}
    teacher = report["systems"]["teacher"]
    assert {k: teacher[k] for k in ("params", "size_mb", "kind")} == {"params": 40, "size_mb": 4 * 40 / 1e6,
                                                                      "kind": "offline"}
    assert report["systems"]["student_kd"]["config"]["objective"]["_target_"].endswith("FrameKD")
    for systems in report["test_sets"].values():
        assert set(systems) == {
            "teacher",
            "student_ctc",
            "student_kd",
            "student_ctc_streaming",
            "student_kd_streaming",
            "student_kd_onnx",
        }
        exported = systems["student_kd_onnx"]  # its own size (the graph file) and memory
        assert (exported["size_mb"], exported["peak_rss_mb"], exported["params"]) == (0.5, 61.0, 10)
        assert "peak_rss_mb" not in systems["student_kd_streaming"]
        kd = systems["student_kd"]  # the symbol delay against the teacher, where decode measured it
        assert (kd["symbol_delay_ms"], kd["symbol_delay_p90_ms"]) == (80.0, 120.0)
        assert "symbol_delay_ms" not in systems["student_ctc"]
        for r in systems.values():
            assert {"wer", "cer", "params", "size_mb", "rtf", "utterances", "latency_ms"} <= set(r)
            assert r["wer"] == pytest.approx((r["sub"] + r["del"] + r["ins"]) / r["words"])
            assert r["wer_ci95"][0] < r["wer"] < r["wer_ci95"][1]
            assert set(r["per_speaker"]) == {f"s{s}" for s in range(12)}
            assert np.mean(list(r["per_speaker"].values())) == pytest.approx(r["wer"])  # equal words each
    assert report["bootstrap"] == {
        "resamples": 500,
        "seed": 0,
        "min_speakers": 5,
        "interval": "percentile",
        "blocked_by": {"test_seen": "speaker", "test_unseen": "speaker"},
    }


def test_comparisons_pair_students_with_the_baseline_variant_by_variant(scored):
    _, report = scored
    pairs = [(c["test_set"], c["a"], c["b"]) for c in report["comparisons"]]
    assert pairs == [
        (t, a, b)
        for t in ("test_seen", "test_unseen")
        for a, b in [
            ("student_kd", "student_ctc"),
            ("student_kd_streaming", "student_ctc_streaming"),
            ("teacher", "student_kd"),
        ]
    ]
    by = {(c["test_set"], c["a"]): c for c in report["comparisons"]}
    seen = by["test_seen", "student_kd"]
    wers = report["test_sets"]["test_seen"]
    assert seen["delta"] == pytest.approx(wers["student_kd"]["wer"] - wers["student_ctc"]["wer"])
    assert seen["delta"] < 0 and seen["ci95"][1] < 0 and seen["p"] < 0.01
    unseen = by["test_unseen", "student_kd"]
    assert unseen["ci95"][0] < 0 < unseen["ci95"][1] and unseen["p"] > 0.05


def test_report_md_states_verdicts_in_words(scored):
    paths, report = scored
    md = paths.report_md.read_text()
    assert md.startswith("# asr-kd report")
    assert "student_kd better than student_ctc on test_seen: -" in md
    assert "student_kd vs student_ctc on test_unseen: no significant difference" in md
    assert "## Provenance" in md and "decode/teacher 12 s" in md
    assert "| student_kd_onnx | " in md and "(torch-free runtime): student_kd_onnx 61 MB" in md


def test_verdict_wording():
    c = {
        "test_set": "test_unseen",
        "a": "student_kd",
        "b": "student_ctc",
        "delta": -0.036,
        "ci95": [-0.051, -0.022],
        "p": 0.001,
    }
    assert (
        verdict(c) == "student_kd better than student_ctc on test_unseen: -3.6 points [-5.1, -2.2], p = 0.001"
    )
    assert verdict({**c, "delta": 0.036, "ci95": [0.022, 0.051]}).startswith(
        "student_kd worse than student_ctc"
    )
    assert verdict({**c, "delta": -0.004, "ci95": [-0.019, 0.01], "p": 0.62}) == (
        "student_kd vs student_ctc on test_unseen: no significant difference, "
        "-0.4 points [-1.9, 1.0], p = 0.62"
    )


def test_alignments_plots_and_provenance_are_written(scored):
    paths, report = scored
    align = paths.decode("student_kd", "test_seen").with_suffix(".align.txt").read_text()
    assert "=== test_seen-s0-0 ===" in align and "REF:" in align and "HYP:" in align
    for name in ("report.png", "report_pareto.png", "report_curves.png"):
        assert (paths.root / name).read_bytes()[:4] == PNG
    p = report["provenance"]
    assert {
        "commit",
        "dirty",
        "overrides",
        "config",
        "torch",
        "torchaudio",
        "python",
        "cpu",
        "gpu",
        "threads",
        "stage_wall_s",
        "corpus_sha",
    } == set(p)
    assert p["stage_wall_s"] == {  # the units the fixture stamped: every input of score, and prepare
        "prepare": 12.5,
        "decode/teacher": 12.5,
        "decode/student_ctc": 12.5,
        "decode/student_kd": 12.5,
        "export/student_kd": 12.5,
    }
    assert p["config"]["score"]["resamples"] == 500 and p["threads"] >= 1
    assert p["corpus_sha"] == "0123456789abcdef"  # stage prepare's hash of the corpus, shown in report.md
    assert "- corpus 0123456789abcdef " in paths.report_md.read_text()


def test_comparison_pairs_and_named_pairs():
    names = [
        "teacher",
        "student_ctc",
        "student_kd",
        "student_kd_lm",
        "student_ctc_lm",
        "student_kd_streaming",
    ]
    assert comparison_pairs(names, ["student_ctc"], ["student_kd"], [["student_kd_lm", "student_kd"]]) == [
        ("student_kd", "student_ctc"),
        ("student_kd_lm", "student_ctc_lm"),
        ("student_kd_lm", "student_kd"),
    ]
    with pytest.raises(ValueError, match="score.compare names student_x, which has no decode"):
        comparison_pairs(names, ["student_ctc"], ["student_kd"], [["student_x", "teacher"]])
    with pytest.raises(ValueError, match="takes pairs"):
        comparison_pairs(names, [], [], [["teacher"]])


def test_speaker_blocks_fall_back_to_utterances():
    ids = ["a", "b", "c"]
    assert speaker_blocks(ids, None, 2) == (None, None)  # no manifest
    assert speaker_blocks(ids, {"a": "x", "b": None, "c": "y"}, 2) == (None, None)  # a speaker missing
    assert speaker_blocks(ids, {"a": "x", "b": "x", "c": "y"}, 3) == (["x", "x", "y"], None)  # too few
    assert speaker_blocks(ids, {"a": "x", "b": "x", "c": "y"}, 2) == (["x", "x", "y"], ["x", "x", "y"])
    with pytest.raises(ValueError, match="utterance 'c' of the decode is not in the test set's manifest"):
        speaker_blocks(ids, {"a": "x", "b": "x"}, 2)


def test_markdown_without_comparisons_or_provenance_still_renders():
    r = {
        "wer": 0.1,
        "cer": 0.05,
        "params": 10,
        "size_mb": 0.1,
        "rtf": 0.01,
        "latency_ms": None,
        "wer_ci95": [0.08, 0.12],
        "sub": 1,
        "del": 0,
        "ins": 0,
    }
    assert "| s | 10.00 [8.00, 12.00] | 1 / 0 / 0 |" in render_markdown({"test_sets": {"t": {"s": r}}})


def test_pareto_front_and_plots(tmp_path):
    assert pareto_front([(1, 30), (2, 20), (3, 25), (4, 10)]) == [(1, 30), (2, 20), (4, 10)]
    report = {
        "test_sets": {
            "t": {
                "a": {"wer": 0.2, "params": 10, "rtf": 0.1, "latency_ms": 300},
                "b": {"wer": 0.1, "params": 100, "rtf": 0.3, "latency_ms": None},
            }
        }
    }
    plot_pareto(report, tmp_path / "pareto.png")
    plot_training_curves(
        {"s": [{"step": 1, "loss": 2.0, "ctc": 2.0}, {"step": 1, "dev_wer": 0.5}]}, tmp_path / "curves.png"
    )
    assert (tmp_path / "pareto.png").read_bytes()[:4] == PNG and (tmp_path / "curves.png").read_bytes()[
        :4
    ] == PNG
    with pytest.raises(ValueError, match="no metrics to plot"):
        plot_training_curves({"s": [{"step": 1, "lr": 0.1}]}, tmp_path / "none.png")
    logs = {s: [{"step": i, "loss": 1 / (i + 1), "kd": i, "alpha": 0.5, "ctc_utts": 8} for i in range(3)]
            for s in ("a", "b")}
    assert list(curve_panels(logs)) == ["loss", "kd"]  # constant terms (alpha, ctc_utts) get no panel


def test_provenance_helpers(tmp_path):
    commit, dirty = git_state()
    if commit is not None:  # a git checkout (the test suite's usual home)
        assert len(commit) == 40 and isinstance(dirty, bool)
    assert git_state(tmp_path) == (None, None)
    write_json(tmp_path / "stamps" / "prepare.json", {"fingerprint": "f", "wall_s": 3.0})
    write_json(tmp_path / "stamps" / "student" / "student_kd.json", {"fingerprint": "f"})
    assert stage_wall_times(tmp_path / "stamps") == {"prepare": 3.0, "student/student_kd": None}


def run_report(wers: dict[str, float], delta: float, significant: bool) -> dict:
    entry = {"cer": 0.1, "rtf": 0.01}
    return {
        "test_sets": {"test": {s: {"wer": w, **entry} for s, w in wers.items()}},
        "comparisons": [
            {
                "test_set": "test",
                "a": "student_kd",
                "b": "student_ctc",
                "delta": delta,
                "ci95": [delta - 0.01, delta + (0.005 if significant else 0.2)],
                "p": 0.1,
            }
        ],
    }


def test_compare_aggregates_two_experiment_dirs(tmp_path):
    runs = {
        "a": run_report({"student_ctc": 0.30, "student_kd": 0.20}, -0.10, True),
        "b": run_report({"student_ctc": 0.34, "student_kd": 0.26}, -0.08, False),
    }
    for name, report in runs.items():
        write_json(tmp_path / name / "report.json", report)
    run_dirs = [str(tmp_path / "a"), str(tmp_path / "b")]
    compare_stage.run(config(exp_dir=tmp_path / "out", runs=f"[{','.join(run_dirs)}]"))
    agg = json.loads((tmp_path / "out" / "compare.json").read_text())
    kd = agg["test_sets"]["test"]["student_kd"]["wer"]
    assert kd["mean"] == pytest.approx(0.23) and kd["sd"] == pytest.approx(np.std([0.2, 0.26], ddof=1))
    assert kd["n"] == 2 and kd["runs"] == {run_dirs[0]: 0.20, run_dirs[1]: 0.26}
    (c,) = agg["comparisons"]
    assert c["delta"]["mean"] == pytest.approx(-0.09) and c["significant"] == {
        "better": 1,
        "worse": 0,
        "none": 1,
    }
    md = (tmp_path / "out" / "compare.md").read_text()
    assert "| student_kd | 23.00 ± 4.24 | 2 | 20.00 | 26.00 |" in md
    assert aggregate_reports({"a": runs["a"]})["test_sets"]["test"]["student_kd"]["wer"]["sd"] is None
    with pytest.raises(FileNotFoundError, match="has no report.json; run `asr-kd stage=score"):
        compare_stage.run(config(exp_dir=tmp_path / "out", runs=f"[{tmp_path / 'missing'}]"))


def test_cli_passes_command_line_overrides_to_the_stage(tmp_path):
    """``asr-kd stage=compare ...``: the stage sees ``cfg.overrides``; compare.md is written."""
    write_json(tmp_path / "a" / "report.json", run_report({"student_kd": 0.2}, -0.1, True))
    code = (
        "import sys; from asr_kd import cli, stages; seen = {}\n"
        "cli.get_stage = lambda name: lambda cfg: print('OVERRIDES', list(cfg.overrides))\n"
        "sys.argv = ['asr-kd'] + sys.argv[1:]; cli.main()"
    )
    args = ["stage=compare", f"runs=[{tmp_path / 'a'}]", f"exp_dir={tmp_path / 'out'}"]
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert f"OVERRIDES {args}" in out.stdout
