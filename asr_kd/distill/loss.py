"""Losses: CTC, frame-level KD on cached top-k teacher posteriors, guided CTC (mixed into training
objectives by asr_kd.distill.objectives).

Distillation terms:

* ``kd``: frame-level KL to the teacher (below). ``shift_frames`` delays the targets for a
  streaming student that emits later than the offline teacher (``delay_window``: by the best of a
  window of delays, per utterance, or per token with ``delay_per="token"``: asr_kd.distill.warp);
  ``blank_weight`` <
  1 with ``blank_threshold`` down-weights blank-dominated frames (``blank_weight = 0``: KD on
  the teacher's spike frames only); with ``symmetric`` a frame is blank-dominated only when the
  student's blank probability exceeds the threshold too, so a student that fires where the
  teacher does not is still corrected (symmetric selection, Hilmes et al. 2025: KD without CTC).
* ``guided_ctc``: alignment-aware, Guided CTC (Kurata & Audhkhasi, Interspeech 2019): no
  distribution matching at all; the student is pushed to put probability on the teacher's
  best non-blank token at the teacher's spike frames (delayed by ``shift_frames``), so it learns
  *where* to fire while the CTC term decides *what*.

KD on top-k targets, two ways (``distill.topk_mode``):

* ``residual`` (default): the distribution over the K cached tokens plus one "rest" bucket holding
  the teacher mass ``1 - sum(top-k)``; the student's rest is its mass outside the same K tokens.
  At T = 1 this is the exact KL between the two distributions coarsened to K+1 outcomes, it keeps
  the teacher's confidence intact, and with ``k = null`` it is the full KL.
* ``renorm``: both distributions restricted to the K tokens and renormalised (the rest ignored).

Temperature scales teacher and student log-probabilities by ``1/T`` (the teacher's rest bucket is
treated as one outcome) and the loss is multiplied by ``T^2`` (Hinton et al.) so gradients keep
their size across temperatures. Losses are summed over frames and averaged over utterances, like
the CTC loss they are mixed with.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from asr_kd.distill.warp import student_agrees, teacher_best, warp_targets
from asr_kd.errors import UserError

__all__ = ["ctc_loss", "kd_loss", "guided_ctc_loss", "align_teacher", "FrameRateMismatchError"]


class FrameRateMismatchError(UserError, ValueError):
    """Teacher and student emit different numbers of frames for the same utterance."""


def ctc_loss(
    logits: torch.Tensor,
    lengths: torch.Tensor,
    targets: torch.Tensor,
    target_lengths: torch.Tensor,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """CTC (blank 0) summed over each utterance, averaged over the batch. ``logits`` (B, T, V);
    ``weights`` (B,) scale each utterance's loss (0: an utterance without CTC targets)."""
    log_probs = logits.float().log_softmax(-1).transpose(0, 1)
    loss = F.ctc_loss(log_probs, targets, lengths, target_lengths, blank=0, reduction="none",
                      zero_infinity=True)
    if weights is not None:
        loss = loss * weights
    return loss.sum() / logits.shape[0]


def align_teacher(
    ids: list[str], student_lengths: torch.Tensor, teacher_lengths: torch.Tensor, tolerance: int = 1
) -> torch.Tensor:
    """Frames usable for KD per utterance: ``min`` of both, if they differ by at most ``tolerance``.

    A larger difference means the teacher and student run at different frame rates (or the cache
    is for other audio): stop with the utterance named rather than distil misaligned frames.
    """
    diff = (student_lengths - teacher_lengths).abs()
    bad = torch.nonzero(diff > tolerance).flatten().tolist()
    if bad:
        i = bad[0]
        raise FrameRateMismatchError(
            f"utterance {ids[i]}: student emits {int(student_lengths[i])} frames, teacher cache has "
            f"{int(teacher_lengths[i])} (tolerance {tolerance}); teacher and student must share the "
            "same subsampling and frame shift"
        )
    return torch.minimum(student_lengths, teacher_lengths)


def kd_loss(
    student_logits: torch.Tensor,
    lengths: torch.Tensor,
    teacher_values: torch.Tensor,
    teacher_indices: torch.Tensor,
    temperature: float = 1.0,
    topk_mode: str = "residual",
    shift_frames: int = 0,
    blank_weight: float = 1.0,
    blank_threshold: float = 0.9,
    symmetric: bool = False,
    delay_window: int = 0,
    delay_per: str = "utterance",
    require_agreement: bool = False,
) -> torch.Tensor:
    """KL(teacher_T || student_T) per frame, summed over valid frames, averaged over the batch.

    ``student_logits`` (B, T, V); ``teacher_values``/``teacher_indices`` (B, T, K); ``lengths``
    (B,) frames valid in both. ``shift_frames`` delays the targets: student frame t learns from
    teacher frame t - shift (the first ``shift`` frames get no KD), for students that emit later
    than the offline teacher. ``delay_window`` > 0 makes the delay tolerant: each utterance takes
    the shift in ``shift_frames .. shift_frames + delay_window`` where its mean KL per frame is
    lowest (the choice is not differentiated), so a student whose emissions lag by a varying amount
    (chunk size, position in the chunk) is matched where it can fire, as Delayed-KD's alignment
    buffer does. With ``delay_per="token"`` the delay is chosen per token instead
    (asr_kd.distill.warp): each teacher spike goes where this student's own best CTC path of the
    teacher's 1-best puts that token, ``shift_frames .. shift_frames + delay_window`` frames later, so a
    student that waits to hear a word and then spells it quickly is taught where it emits. With
    ``require_agreement`` an utterance gets KD only once the student's greedy 1-best equals the
    teacher's (asr_kd.distill.warp.student_agrees), so KD never firms up an untrained student's path.
    ``blank_weight`` scales frames where the teacher's blank probability exceeds
    ``blank_threshold`` (1.0 = plain KD), and the student's too if ``symmetric``.
    """
    b, t, _ = student_logits.shape
    t = min(t, teacher_values.shape[1])
    student_logits, teacher_values, teacher_indices = (
        student_logits[:, :t], teacher_values[:, :t].float(), teacher_indices[:, :t]
    )
    if topk_mode not in ("residual", "renorm"):
        raise ValueError(f"topk_mode must be 'residual' or 'renorm', not {topk_mode!r}")
    if delay_per not in ("utterance", "token"):
        raise ValueError(f"delay_per must be 'utterance' or 'token', not {delay_per!r}")
    s_logp = (student_logits.float() / temperature).log_softmax(-1)
    student_blank = None
    if symmetric:
        student_blank = student_logits.detach().float().softmax(-1)[..., 0] > blank_threshold
    frames = torch.arange(t, device=lengths.device)[None, :]
    valid = frames < lengths[:, None]
    agrees = None
    if require_agreement:
        agrees = student_agrees(student_logits, lengths, teacher_values, teacher_indices)
        valid &= agrees[:, None]
    if delay_per == "token":
        values, indices, usable = warp_targets(student_logits, lengths, teacher_values, teacher_indices,
                                               shift_frames, shift_frames + delay_window, active=agrees)
        candidates = [(values, indices, valid & usable)]
    else:
        candidates = [
            (_delay(teacher_values, shift), _delay(teacher_indices, shift), valid & (frames >= shift))
            if shift else (teacher_values, teacher_indices, valid)
            for shift in range(shift_frames, min(shift_frames + delay_window + 1, t))]
    best_kl = best_mean = None
    for values, indices, usable in candidates:
        weights = usable.float()
        if blank_weight != 1.0:
            blank = _blank_prob(values, indices) > blank_threshold
            if student_blank is not None:
                blank &= student_blank
            weights = weights * torch.where(blank, blank_weight, 1.0)
        kl = _frame_kl(s_logp, values, indices, temperature, topk_mode) * weights  # (B, T)
        mean = kl.detach().sum(1) / weights.sum(1).clamp(min=1.0)
        if best_kl is None:
            best_kl, best_mean = kl, mean
        else:
            better = mean < best_mean
            best_kl = torch.where(better[:, None], kl, best_kl)
            best_mean = torch.minimum(mean, best_mean)
    if best_kl is None:  # every utterance shorter than the shift
        return student_logits.sum() * 0.0
    return best_kl.sum() * temperature**2 / b


def _frame_kl(s_logp: torch.Tensor, teacher_values: torch.Tensor, teacher_indices: torch.Tensor,
              temperature: float, topk_mode: str) -> torch.Tensor:
    """(B, T) KL of the student's ``s_logp`` (already at temperature) to the top-k targets."""
    s_top = s_logp.gather(-1, teacher_indices)
    t_top = teacher_values / temperature
    if topk_mode == "renorm":
        t_logp, s_logp_k = t_top.log_softmax(-1), s_top.log_softmax(-1)
    else:
        t_rest = _log_rest(teacher_values) / temperature
        t_logp = torch.cat([t_top, t_rest.unsqueeze(-1)], -1).log_softmax(-1)
        s_rest = _log1mexp(torch.logsumexp(s_top, -1))
        s_logp_k = torch.cat([s_top, s_rest.unsqueeze(-1)], -1)
    return (t_logp.exp() * (t_logp - s_logp_k)).sum(-1)


def guided_ctc_loss(
    student_logits: torch.Tensor,
    lengths: torch.Tensor,
    teacher_values: torch.Tensor,
    teacher_indices: torch.Tensor,
    shift_frames: int = 0,
) -> torch.Tensor:
    """Guided CTC: ``sum_t M[t] (1 - p_student(k_t | t))``, summed over frames, averaged over the batch.

    ``k_t`` is the teacher's best token at frame ``t - shift_frames`` and ``M[t] = 1`` where that
    token is not blank (a spike) and ``t`` is a valid frame (``t < lengths``, ``t >= shift_frames``).
    ``1 - p`` (rather than Kurata & Audhkhasi's ``-p``) has the same gradient and is 0 at the
    optimum. Shapes as :func:`kd_loss`.
    """
    b, t, _ = student_logits.shape
    t = min(t, teacher_values.shape[1])
    best = teacher_best(teacher_values[:, :t], teacher_indices[:, :t])[..., None]  # (B, T, 1)
    if shift_frames:
        best = _delay(best, shift_frames)
    frames = torch.arange(t, device=lengths.device)[None, :]
    mask = (frames < lengths[:, None]) & (frames >= shift_frames) & (best[..., 0] != 0)
    p = student_logits[:, :t].float().softmax(-1).gather(-1, best)[..., 0]  # (B, T)
    return ((1 - p) * mask).sum() / b


def _blank_prob(values: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Teacher blank probability per frame (0 where blank is outside the top k)."""
    return (values.exp() * (indices == 0)).sum(-1)


def _delay(x: torch.Tensor, shift: int) -> torch.Tensor:
    """Move frames ``shift`` steps later along dim 1 (the first ``shift`` frames repeat frame 0)."""
    return torch.cat([x[:, :1].expand(-1, shift, *x.shape[2:]), x[:, :-shift]], 1)


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(x))`` for ``x <= 0``, clamped away from log(0)."""
    return torch.log(torch.clamp(-torch.expm1(torch.clamp(x, max=0.0)), min=1e-10))


def _log_rest(values: torch.Tensor) -> torch.Tensor:
    """Log of the teacher mass outside the cached top k."""
    return _log1mexp(torch.logsumexp(values, -1))
