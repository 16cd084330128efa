"""Losses: KD and guided CTC equal hand-computed values, frame alignment is enforced, shift and blank
weights work; the objectives mix them with CTC under a scheduled alpha."""

import math

import pytest
import torch

from asr_kd.data.dataset import Batch
from asr_kd.distill.loss import FrameRateMismatchError, align_teacher, ctc_loss, guided_ctc_loss, kd_loss
from asr_kd.distill.objectives import CTCOnly, FrameKD, GuidedCTC
from asr_kd.errors import ConfigError


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


def test_delay_window_matches_each_utterance_at_its_own_delay():
    """A student that fires 1 frame (utterance a) and 2 frames (b) after the teacher: a fixed shift
    fits one of them, the window fits both exactly, and KD never rewards a wrong delay."""
    torch.manual_seed(0)
    teacher = (3 * torch.randn(2, 12, 5)).log_softmax(-1)
    idx = torch.arange(5).expand(2, 12, 5)
    student = torch.stack([torch.cat([teacher[0, :1].expand(1, -1), teacher[0, :-1]]),
                           torch.cat([teacher[1, :1].expand(2, -1), teacher[1, :-2]])])
    lengths = torch.tensor([12, 12])
    window = kd_loss(student, lengths, teacher, idx, shift_frames=0, delay_window=3)
    assert window.item() == pytest.approx(0.0, abs=1e-4)
    for shift in (0, 1, 2):
        assert kd_loss(student, lengths, teacher, idx, shift_frames=shift).item() > 1.0
    # the window equals the fixed shift of each utterance alone
    for b, shift in ((0, 1), (1, 2)):
        noisy = student[b:b + 1] + 0.3 * torch.randn(1, 12, 5)
        one = kd_loss(noisy, lengths[:1], teacher[b:b + 1], idx[:1], delay_window=3)
        fixed = kd_loss(noisy, lengths[:1], teacher[b:b + 1], idx[:1], shift_frames=shift)
        assert 0.0 < one.item() == pytest.approx(fixed.item(), rel=1e-5)
    # the chosen delay is not differentiated through: gradients flow to the student only
    s = student.clone().requires_grad_(True)
    kd_loss(s + 0.1 * torch.randn_like(s), lengths, teacher, idx, delay_window=3).backward()
    assert s.grad is not None and torch.isfinite(s.grad).all()


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
    msg = "utterance b: student emits 7 frames, teacher cache has 14"
    with pytest.raises(FrameRateMismatchError, match=msg):
        align_teacher(["a", "b"], torch.tensor([10, 7]), torch.tensor([10, 14]))


def _guided_case():
    """3 frames, 3 tokens; the teacher keeps top-2: blank at frame 0, token 2 at frame 1, token 1 at 2."""
    s = torch.tensor([[[0.0, 0.0, 0.0], [0.0, 1.0, 2.0], [2.0, 1.0, 0.0]]])
    probs = [[1 / 3] * 3, [math.exp(x) / (1 + math.e + math.e**2) for x in (0, 1, 2)],
             [math.exp(x) / (1 + math.e + math.e**2) for x in (2, 1, 0)]]
    v = torch.tensor([[[0.9, 0.1], [0.6, 0.3], [0.4, 0.35]]]).log()
    i = torch.tensor([[[0, 1], [2, 0], [1, 0]]])
    return s, v, i, probs


def test_guided_ctc_matches_hand_computation():
    s, v, i, p = _guided_case()
    # Spikes at frame 1 (token 2) and frame 2 (token 1); frame 0 is blank: no guidance.
    expected = (1 - p[1][2]) + (1 - p[2][1])
    assert guided_ctc_loss(s, torch.tensor([3]), v, i).item() == pytest.approx(expected, rel=1e-6)
    # Padding: frame 2 is not valid.
    assert guided_ctc_loss(s, torch.tensor([2]), v, i).item() == pytest.approx(1 - p[1][2], rel=1e-6)
    # Delay by one frame: student frame 2 is guided by teacher frame 1 (token 2), frame 1 by the blank.
    shifted = guided_ctc_loss(s, torch.tensor([3]), v, i, shift_frames=1)
    assert shifted.item() == pytest.approx(1 - p[2][2], rel=1e-6)
    # A batch averages over utterances; a student spiking exactly there costs nothing.
    perfect = torch.tensor([[[0.0, 0, 0], [-50, -50, 50], [-50, 50, -50]]])
    both = guided_ctc_loss(torch.cat([s, perfect]), torch.tensor([3, 3]), v.expand(2, -1, -1),
                           i.expand(2, -1, -1))
    assert both.item() == pytest.approx(expected / 2, rel=1e-6)


def test_guided_ctc_gradient_raises_the_spike_token_only_at_spikes():
    s, v, i, _ = _guided_case()
    s.requires_grad_(True)
    guided_ctc_loss(s, torch.tensor([3]), v, i).backward()
    assert s.grad[0, 0].abs().sum() == 0  # blank frame: untouched
    assert s.grad[0, 1, 2] < 0 and s.grad[0, 2, 1] < 0  # descending raises the teacher's token


def _batch(v, i, lengths) -> Batch:
    return Batch(ids=["u"], feats=torch.zeros(1, 12, 4), lengths=torch.tensor([12]),
                 targets=torch.tensor([[2, 1]]), target_lengths=torch.tensor([2]),
                 labelled=torch.tensor([True]), pseudo=torch.tensor([False]),
                 teacher_confidence=torch.tensor([1.0]),
                 teacher_values=v, teacher_indices=i, teacher_lengths=lengths)


def test_objectives_mix_ctc_and_their_term_with_a_scheduled_alpha():
    s, v, i, _ = _guided_case()
    lengths = torch.tensor([3])
    batch = _batch(v, i, lengths)
    ctc = ctc_loss(s, lengths, batch.targets, batch.target_lengths).item()
    kd = kd_loss(s, lengths, v, i, temperature=2.0).item()
    assert CTCOnly()(s, lengths, batch, 0.5)[0].item() == pytest.approx(ctc)
    assert not CTCOnly().needs_teacher and FrameKD().needs_teacher
    constant = FrameKD(alpha=0.5, temperature=2.0)
    for progress in (0.0, 0.9):
        assert constant(s, lengths, batch, progress)[0].item() == pytest.approx(0.5 * ctc + 0.5 * kd)
    scheduled = FrameKD(alpha=0.9, alpha_final=0.1, temperature=2.0)
    assert scheduled(s, lengths, batch, 0.0)[0].item() == pytest.approx(0.1 * ctc + 0.9 * kd)
    loss, parts = scheduled(s, lengths, batch, 0.5)
    assert parts["alpha"] == pytest.approx(0.5) and loss.item() == pytest.approx(0.5 * ctc + 0.5 * kd)
    assert scheduled.alpha_at(1.0) == pytest.approx(0.1)
    guided = GuidedCTC(alpha=0.5, shift_frames=1)(s, lengths, batch, 0.0)[0].item()
    assert guided == pytest.approx(0.5 * ctc + 0.5 * guided_ctc_loss(s, lengths, v, i, shift_frames=1).item())
    assert FrameKD(hard_targets="teacher").pseudo_labels == "all" and FrameKD().pseudo_labels == "none"
    assert FrameKD(hard_targets="unlabeled").pseudo_labels == "unlabeled"


def _mixed_batch():
    """Three utterances: transcribed; untranscribed with a confident 1-best; untranscribed with a
    doubtful one (the 1-best stands in for the missing transcripts)."""
    torch.manual_seed(0)
    logits = torch.randn(3, 6, 5)
    values, indices = logits.log_softmax(-1).topk(3, -1)
    three = torch.tensor([6, 6, 6])
    return logits, Batch(
        ids=["a", "b", "c"], feats=torch.zeros(3, 24, 4), lengths=three,
        targets=torch.tensor([[2, 1], [3, 0], [4, 0]]), target_lengths=torch.tensor([2, 1, 1]),
        labelled=torch.tensor([True, False, False]), pseudo=torch.tensor([False, True, True]),
        teacher_confidence=torch.tensor([0.2, 0.9, 0.4]),
        teacher_values=values, teacher_indices=indices, teacher_lengths=three)


def test_ctc_covers_transcripts_and_confident_pseudo_labels_only():
    logits, batch = _mixed_batch()
    lengths = batch.lengths
    per_utt = [ctc_loss(logits[i : i + 1], lengths[i : i + 1], batch.targets[i : i + 1],
                        batch.target_lengths[i : i + 1]).item() for i in range(3)]
    plain = FrameKD(alpha=0.0, hard_targets="unlabeled")(logits, lengths, batch, 0.0)[0].item()
    assert plain == pytest.approx(sum(per_utt) / 3, rel=1e-5)
    doubtful_dropped = FrameKD(alpha=0.0, hard_targets="unlabeled", min_confidence=0.5)
    filtered, parts = doubtful_dropped(logits, lengths, batch, 0.0)
    assert filtered.item() == pytest.approx((per_utt[0] + per_utt[1]) / 3, rel=1e-5)  # c: too doubtful
    assert parts["ctc_utts"] == pytest.approx(2 / 3)
    unpaired = Batch(**{**batch.__dict__, "pseudo": torch.tensor([False, False, False])})  # no 1-best given
    assert CTCOnly()(logits, lengths, unpaired, 0.0)[0].item() == pytest.approx(per_utt[0] / 3, rel=1e-5)


def test_symmetric_selection_keeps_frames_where_the_student_fires():
    teacher = torch.tensor([[[0.0, -9.0], [0.0, -9.0]]])  # the teacher says blank on both frames
    values, indices = teacher, torch.tensor([[[0, 1], [0, 1]]])
    student = torch.tensor([[[5.0, -5.0, -5.0], [-5.0, 5.0, -5.0]]])  # blank, then a token
    lengths = torch.tensor([2])
    plain = kd_loss(student, lengths, values, indices, blank_weight=0.0, blank_threshold=0.5)
    assert plain.item() == 0.0  # both frames dropped as blank: the student's false spike goes unseen
    symmetric = kd_loss(student, lengths, values, indices, blank_weight=0.0, blank_threshold=0.5,
                        symmetric=True)
    frame2 = kd_loss(student[:, 1:], torch.tensor([1]), values[:, 1:], indices[:, 1:])
    assert symmetric.item() == pytest.approx(frame2.item()) and symmetric.item() > 1.0


@pytest.mark.parametrize("kwargs,message", [({"alpha": 1.5}, "alpha must lie in"),
                                            ({"topk_mode": "both"}, "topk_mode"),
                                            ({"temperature": 0.0}, "temperature must be positive"),
                                            ({"delay_per": "word"}, "delay_per must be")])
def test_objectives_refuse_impossible_settings(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        FrameKD(**kwargs)


def test_split_specs_name_a_split_or_its_first_utterances():
    from asr_kd.data.dataset import parse_split

    assert parse_split("train") == ("train", None) and parse_split("unlabeled:1200") == ("unlabeled", 1200)
    for bad in ("unlabeled:", "unlabeled:half", "unlabeled:0"):
        with pytest.raises(ConfigError, match="<split>:<number of utterances>"):
            parse_split(bad)
