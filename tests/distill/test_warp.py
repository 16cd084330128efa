"""Per-token alignment of teacher targets to a streaming student (asr_kd.distill.warp): the windowed
path is the best CTC path, spikes are found, and KD with ``delay_per="token"`` follows a student
whose delay varies token by token, which one delay per utterance cannot."""

import itertools

import numpy as np
import pytest
import torch

from asr_kd.distill.loss import kd_loss
from asr_kd.distill.warp import constrained_path, student_agrees, teacher_spikes, warp_targets


def _best_ctc_path_score(log_probs: np.ndarray, tokens: list[int]) -> float:
    """Exhaustive search over every frame labelling that collapses to ``tokens`` (small cases only)."""
    best = -np.inf
    for labels in itertools.product(range(log_probs.shape[1]), repeat=len(log_probs)):
        collapsed = [k for i, k in enumerate(labels) if k != 0 and (i == 0 or k != labels[i - 1])]
        if collapsed == tokens:
            best = max(best, sum(log_probs[t, k] for t, k in enumerate(labels)))
    return best


def _path_score(log_probs: np.ndarray, tokens: list[int], states: np.ndarray) -> float:
    labels = [0 if s % 2 == 0 else tokens[s // 2] for s in states]
    return sum(log_probs[t, k] for t, k in enumerate(labels))


@pytest.mark.parametrize("tokens", [[1, 2], [2, 2], [1, 2, 1]])
def test_unconstrained_path_is_the_best_ctc_path(tokens):
    rng = np.random.default_rng(len(tokens) + tokens[-1])
    for _ in range(5):
        log_probs = torch.from_numpy(3 * rng.normal(size=(6, 3))).log_softmax(-1).numpy()
        states, found = constrained_path(log_probs[None], np.array([6]), [tokens], [[0] * len(tokens)],
                                         [[6] * len(tokens)])
        assert found[0]
        best = _best_ctc_path_score(log_probs, tokens)
        assert _path_score(log_probs, tokens, states[0]) == pytest.approx(best)


def test_windows_bound_each_token_and_utterances_are_independent():
    rng = np.random.default_rng(0)
    log_probs = torch.from_numpy(rng.normal(size=(3, 12, 4))).log_softmax(-1).numpy()
    tokens, lengths = [[1, 2], [3, 3, 1], [2]], np.array([12, 9, 5])
    earliest, latest = [[2, 6], [0, 3, 5], [1]], [[4, 8], [2, 5, 8], [3]]
    states, found = constrained_path(log_probs, lengths, tokens, earliest, latest)
    assert found.all()
    for i, y in enumerate(tokens):
        for k in range(len(y)):
            frames = np.flatnonzero(states[i, : lengths[i]] == 2 * k + 1)
            assert len(frames) and earliest[i][k] <= frames.min() and frames.max() <= latest[i][k]
        alone, _ = constrained_path(log_probs[i:i + 1, : lengths[i]], lengths[i:i + 1], [y],
                                    [earliest[i]], [latest[i]])
        assert (alone[0] == states[i, : lengths[i]]).all()
    impossible, found = constrained_path(log_probs[:1], lengths[:1], [[1, 2]], [[5, 0]], [[6, 1]])
    assert not found[0]  # the second token's window ends before the first one's opens


def test_teacher_spikes_are_the_greedy_runs():
    runs = [(3, 1, 2), (4, 4, 4), (4, 7, 7), (2, 8, 8)]
    assert teacher_spikes(np.array([0, 3, 3, 0, 4, 0, 0, 4, 2])) == runs
    assert teacher_spikes(np.array([0, 0])) == [] and teacher_spikes(np.array([], dtype=int)) == []


def _peaky(tokens_at: dict[int, int], frames: int, vocab: int = 5) -> torch.Tensor:
    """(1, T, V) log-probabilities: blank everywhere but token ``k`` at frame ``t`` for each ``t: k``."""
    logits = torch.full((frames, vocab), -6.0)
    logits[:, 0] = 6.0
    for t, k in tokens_at.items():
        logits[t, 0], logits[t, k] = -6.0, 6.0
    return logits.log_softmax(-1)[None]


def test_token_delays_follow_a_student_that_waits_then_spells_quickly():
    """Teacher spells 1, 2, 3 at frames 1, 3, 5; the student emits them at 5, 6, 7 (delays 4, 3, 2): the
    per-token warp puts each spike on the student's frame; no single delay does."""
    teacher = _peaky({1: 1, 3: 2, 5: 3}, 12)
    student = _peaky({5: 1, 6: 2, 7: 3}, 12)
    indices = torch.arange(5).expand(1, 12, 5)
    lengths = torch.tensor([12])
    values, moved, usable = warp_targets(student, lengths, teacher, indices, 0, 4)
    best = moved.gather(-1, values.argmax(-1, keepdim=True))[0, :, 0]
    assert best[5:8].tolist() == [1, 2, 3] and (best[:5] == 0).all() and (best[8:] == 0).all()
    token = kd_loss(student, lengths, teacher, indices, delay_window=4, delay_per="token")
    assert token.item() < 1e-3
    for shift in range(5):
        assert kd_loss(student, lengths, teacher, indices, shift_frames=shift).item() > 1.0
    assert kd_loss(student, lengths, teacher, indices, delay_window=4).item() > 1.0
    # a window too narrow for this student keeps the targets near the teacher's times: KD is high again
    late = kd_loss(student, lengths, teacher, indices, delay_window=1, delay_per="token")
    assert late.item() > 1.0
    s = student.clone().requires_grad_(True)
    kd_loss(s, lengths, teacher, indices, delay_window=4, delay_per="token").backward()
    assert s.grad is not None and torch.isfinite(s.grad).all()


def test_student_gaps_facing_no_teacher_gap_get_no_target():
    """Teacher spikes on adjacent frames, the student with a blank between them: that blank frame has
    no teacher frame to learn from and is left to CTC."""
    teacher = _peaky({2: 1, 3: 2}, 8)
    student = _peaky({3: 1, 5: 2}, 8)
    _, _, usable = warp_targets(student, torch.tensor([8]), teacher, torch.arange(5).expand(1, 8, 5), 0, 3)
    assert usable[0].tolist() == [True, True, True, True, False, True, True, True]


def test_kd_waits_until_the_student_finds_the_teachers_words():
    """With require_agreement an utterance has KD only once the student's greedy 1-best is the teacher's."""
    teacher = torch.cat([_peaky({1: 1, 3: 2, 5: 3}, 12), _peaky({1: 1, 3: 2, 5: 3}, 12)])
    student = torch.cat([_peaky({6: 1, 7: 2, 8: 3}, 12), _peaky({6: 1, 7: 3}, 12)])  # 2nd: drops one
    indices = torch.arange(5).expand(2, 12, 5)
    lengths = torch.tensor([12, 12])
    assert student_agrees(student, lengths, teacher, indices).tolist() == [True, False]
    gated = kd_loss(student, lengths, teacher, indices, delay_window=2, require_agreement=True)
    first = kd_loss(student[:1], lengths[:1], teacher[:1], indices[:1], delay_window=2)
    assert gated.item() == pytest.approx(first.item() / 2) and gated.item() > 1.0  # averaged over the batch
