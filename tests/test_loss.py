"""Losses: KD equals hand-computed values, frame alignment is enforced, shift and blank weights work."""

import math

import pytest
import torch

from asr_kd.distill.loss import FrameRateMismatchError, align_teacher, kd_loss


def _one_frame(student, teacher_top, indices):
    s = torch.tensor(student).view(1, 1, -1)
    v = torch.tensor(teacher_top).log().view(1, 1, -1)
    i = torch.tensor(indices).view(1, 1, -1)
    return s, v, i


def test_residual_kd_matches_hand_computation():
    # Student logits over 3 tokens; teacher keeps top-2: p(0)=0.7, p(2)=0.2, rest=0.1.
    s, v, i = _one_frame([1.0, 0.0, 2.0], [0.7, 0.2], [0, 2])
    z = math.exp(1) + math.exp(0) + math.exp(2)
    q = [math.exp(1) / z, math.exp(2) / z, math.exp(0) / z]  # student: token 0, token 2, rest
    p = [0.7, 0.2, 0.1]
    expected = sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))
    got = kd_loss(s, torch.tensor([1]), v, i, temperature=1.0, topk_mode="residual")
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_renorm_kd_with_temperature_matches_hand_computation():
    s, v, i = _one_frame([1.0, 0.0, 2.0], [0.7, 0.2], [0, 2])
    temp = 2.0
    tp = [0.7 ** (1 / temp), 0.2 ** (1 / temp)]
    tp = [x / sum(tp) for x in tp]
    sq = [math.exp(1 / temp), math.exp(2 / temp)]
    sq = [x / sum(sq) for x in sq]
    expected = temp**2 * sum(a * math.log(a / b) for a, b in zip(tp, sq, strict=True))
    got = kd_loss(s, torch.tensor([1]), v, i, temperature=temp, topk_mode="renorm")
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_full_posterior_kd_equals_torch_kl_div():
    torch.manual_seed(0)
    s, t = torch.randn(2, 7, 5), torch.randn(2, 7, 5).log_softmax(-1)
    idx = torch.arange(5).expand(2, 7, 5)
    ref = torch.nn.functional.kl_div(s.log_softmax(-1), t, log_target=True, reduction="sum") / 2
    assert kd_loss(s, torch.tensor([7, 7]), t, idx).item() == pytest.approx(ref.item(), rel=1e-4)


def test_kd_ignores_padding_and_shifted_frames():
    torch.manual_seed(0)
    s, t = torch.randn(1, 6, 5), torch.randn(1, 6, 5).log_softmax(-1)
    idx = torch.arange(5).expand(1, 6, 5)
    base = kd_loss(s[:, :4], torch.tensor([4]), t[:, :4], idx[:, :4])
    assert kd_loss(s, torch.tensor([4]), t, idx).item() == pytest.approx(base.item(), rel=1e-5)
    shifted = kd_loss(s, torch.tensor([6]), t, idx, shift_frames=2)
    ref = torch.nn.functional.kl_div(s[:, 2:].log_softmax(-1), t[:, :4], log_target=True, reduction="sum")
    assert shifted.item() == pytest.approx(ref.item(), rel=1e-4)


def test_blank_weight_scales_blank_dominated_frames():
    s = torch.zeros(1, 2, 3)
    t = torch.tensor([[[0.98, 0.01, 0.01], [0.1, 0.8, 0.1]]]).log()
    idx = torch.arange(3).expand(1, 2, 3)
    plain = kd_loss(s, torch.tensor([2]), t, idx)
    no_blank = kd_loss(s, torch.tensor([2]), t, idx, blank_weight=0.0)
    only_second = kd_loss(s[:, 1:], torch.tensor([1]), t[:, 1:], idx[:, 1:])
    assert no_blank.item() == pytest.approx(only_second.item(), rel=1e-5)
    assert plain.item() > no_blank.item()


def test_alignment_tolerates_one_frame_and_refuses_more():
    got = align_teacher(["a", "b"], torch.tensor([10, 7]), torch.tensor([9, 7]))
    assert got.tolist() == [9, 7]
    with pytest.raises(FrameRateMismatchError, match="utterance b: student emits 7 frames, teacher cache has 14"):
        align_teacher(["a", "b"], torch.tensor([10, 7]), torch.tensor([10, 14]))
