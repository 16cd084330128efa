import numpy as np
import pytest
import torch

from asr_kd.data.tokenizer import CharTokenizer
from asr_kd.decoding.latency import (
    SymbolDelays,
    delay_summary,
    encode,
    frame_offset,
    symbol_delays_ms,
    token_frames,
)

FRAME_MS = 40.0


def spikes(n_frames: int, vocab: int, frames: list[int], tokens: list[int]) -> torch.Tensor:
    """(T, V) logits: blank everywhere except token ``tokens[k]`` at frame ``frames[k]``."""
    logits = torch.full((n_frames, vocab), -10.0)
    logits[:, 0] = 0.0
    for frame, token in zip(frames, tokens, strict=True):
        logits[frame, token] = 10.0
    return logits


def test_student_two_frames_later_than_teacher():
    tok = CharTokenizer.from_texts(["abcd "])
    ids = encode(tok, "ab cd")
    teacher = spikes(12, len(tok), [1, 2, 4, 5, 6], ids)
    student = spikes(12, len(tok), [3, 4, 6, 7, 8], ids)
    ref = token_frames(teacher, ids)
    assert ref == [1, 2, 4, 5, 6]
    assert symbol_delays_ms(teacher, ids, ref, FRAME_MS) == [0.0] * 5
    delays = symbol_delays_ms(student, ids, ref, FRAME_MS)
    assert delays == pytest.approx([2 * FRAME_MS] * 5)
    # A reference at half the frame shift (20 ms) counts in time, not in frames.
    at_20ms = symbol_delays_ms(student, ids, [2, 4, 8, 10, 12], FRAME_MS, ref_frame_ms=20.0)
    assert at_20ms == pytest.approx([80.0] * 5)
    assert frame_offset(delays, [0.0] * 5, FRAME_MS) == 2


def test_delay_summary_mean_and_p90():
    summary = delay_summary([float(ms) for ms in range(0, 110, 10)])  # 0, 10, ..., 100
    assert summary == pytest.approx({"mean": 50.0, "p90": 90.0})
    assert delay_summary([]) == {"mean": None, "p90": None}
    assert frame_offset([100.0, 140.0], [20.0, 40.0], FRAME_MS) == 2  # (120 - 30) / 40 = 2.25


def test_unalignable_text_is_none():
    tok = CharTokenizer.from_texts(["abcd "])
    assert encode(tok, "xyz") is None  # characters the model cannot emit
    ids = encode(tok, "ab cd")
    short = spikes(3, len(tok), [0, 1, 2], ids[:3])
    assert token_frames(short, ids) is None  # more tokens than frames
    assert symbol_delays_ms(short, ids, [0, 1, 2, 3, 4], FRAME_MS) is None
    assert token_frames(short, []) == []


def test_symbol_delays_of_a_test_set_against_the_teacher():
    tok = CharTokenizer.from_texts(["abcd "])
    ids = encode(tok, "ab cd")
    texts = {"u1": "ab cd", "u2": "ab cd", "u3": "xyz"}  # u3 cannot be encoded
    with torch.inference_mode():  # as the decode stage computes them
        teacher_scores = spikes(12, len(tok), [1, 2, 4, 5, 6], ids)
        student_scores = spikes(12, len(tok), [3, 4, 6, 7, 8], ids)
    teacher = SymbolDelays(tok, FRAME_MS)
    for utt, text in texts.items():
        teacher.add(utt, text, teacher_scores if utt != "u2" else teacher_scores[:3])  # u2: too short
    reference = teacher.to_json()
    assert reference["utterances"] == {"u1": {"tokens": list("ab cd"), "frames": [1, 2, 4, 5, 6]},
                                       "u2": None, "u3": None}
    student = SymbolDelays(tok, FRAME_MS, reference)
    for utt, text in texts.items():
        student.add(utt, text, student_scores)
    assert student.summary() == pytest.approx({"symbol_delay_ms": 80.0, "symbol_delay_p90_ms": 80.0,
                                               "symbol_delay_utts": 1, "symbol_offset_frames": 2})
    other = SymbolDelays(CharTokenizer(["<blk>", "d", "c", "b", "a", " "]), FRAME_MS, reference)  # other ids
    other.add("u1", "ab cd", spikes(12, 6, [3, 4, 6, 7, 8], encode(other.tokenizer, "ab cd")))
    assert other.summary()["symbol_delay_ms"] == pytest.approx(80.0)
    assert SymbolDelays(tok, FRAME_MS, {"frame_ms": FRAME_MS, "utterances": {}}).summary() == {
        "symbol_delay_ms": None, "symbol_delay_p90_ms": None, "symbol_delay_utts": 0,
        "symbol_offset_frames": None}


def test_decode_stage_measures_a_student_against_the_teacher_alignments(tmp_path):
    from model_fixtures import make_bundle

    from asr_kd.data.dataset import UtteranceDataset
    from asr_kd.data.manifest import Utterance
    from asr_kd.decoding.corpus import decode_offline
    from asr_kd.paths import ExpPaths
    from asr_kd.stages.decode import align_frames_path, symbol_delays
    from asr_kd.utils import write_json

    bundle = make_bundle(tmp_path)
    rng = np.random.default_rng(0)
    feats = {utt: rng.normal(10, 3, (n, 80)).astype(np.float32) for utt, n in (("u1", 48), ("u2", 8))}
    utts = [Utterance("u1", "u1.wav", 0.5, "ab c"),
            Utterance("u2", "u2.wav", 0.1, "abcde abcde")]  # more tokens than u2's frames: skipped
    dataset = UtteranceDataset(utts, feats, bundle.cmvn, bundle.tokenizer)
    paths = ExpPaths(tmp_path)
    assert symbol_delays(paths, "student", "test", bundle) is None  # no teacher alignments yet
    teacher = symbol_delays(paths, "teacher", "test", bundle)
    decode_offline(bundle, dataset, None, teacher.add)
    assert teacher.alignments["u2"] is None and len(teacher.alignments["u1"]["frames"]) == 4
    write_json(align_frames_path(paths, "test"), teacher.to_json())
    student = symbol_delays(paths, "student", "test", bundle)  # the same model: no delay
    decode_offline(bundle, dataset, None, student.add)
    assert student.summary() == {"symbol_delay_ms": 0.0, "symbol_delay_p90_ms": 0.0, "symbol_delay_utts": 1,
                                 "symbol_offset_frames": 0}


def test_a_fixed_shift_that_no_longer_fits_the_decoded_chunk_is_reported(caplog):
    from types import SimpleNamespace

    from asr_kd.stages.decode import warn_stale_shift

    plan = SimpleNamespace(systems={
        "fixed": SimpleNamespace(objective={"shift_frames": 2}),
        "window": SimpleNamespace(objective={"shift_frames": 0, "delay_window": 2}),
        "ctc": SimpleNamespace(objective={}),
    })
    with caplog.at_level("WARNING"):
        for system, offset in (("fixed", 2), ("window", 0), ("window", 2), ("ctc", 5), ("fixed", None)):
            warn_stale_shift(plan, system, f"{system}_streaming", "test", offset)
        assert not caplog.records
        warn_stale_shift(plan, "fixed", "fixed_streaming", "test", 4)  # e.g. streamed at a smaller chunk
    assert "fixed was trained on targets delayed 2 frame(s), but fixed_streaming on test emits 4" \
        in caplog.text
