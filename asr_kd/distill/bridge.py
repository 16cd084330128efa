"""The frame-rate bridge: teacher posteriors brought to the student's frame rate before caching.

A teacher whose frames are ``r`` times shorter than the student's (wav2vec 2.0: 20 ms; the
students here: 40 ms) is merged ``r`` frames at a time **in probability space**: student frame
``j`` gets the mean of the teacher's probabilities over frames ``r*j .. r*j + r - 1`` (fewer for
the last one), then its log. The mean of distributions is a distribution, and a token the teacher
is sure of in either half keeps at least half its mass, so a short spike between blanks survives
(max-pooling log-probabilities would not sum to one; dropping every other frame would lose it).
Rates that are not an integer ratio (or a teacher slower than the student) cannot be bridged this
way: :func:`merge_factor` names both. A student at the teacher's rate (``features.frontend.
frame_shift_ms`` halved) needs no merge (``r = 1``).
"""

from __future__ import annotations

import torch

from asr_kd.distill.loss import FrameRateMismatchError

__all__ = ["merge_factor", "merge_frames", "fit_frames"]


def merge_factor(teacher_shift_ms: float, student_shift_ms: float) -> int:
    """``r``: how many teacher frames make one student frame; a one-line error when none does."""
    r = student_shift_ms / teacher_shift_ms
    if r < 1 or abs(r - round(r)) > 1e-6:
        raise FrameRateMismatchError(
            f"the teacher emits a frame every {teacher_shift_ms:g} ms, the student every "
            f"{student_shift_ms:g} ms: "
            "not a whole number of teacher frames per student frame; give the student a frame shift that "
            "is a multiple of the teacher's (features.frontend.frame_shift_ms x 4)"
        )
    return round(r)


def merge_frames(log_probs: torch.Tensor, r: int) -> torch.Tensor:
    """``(T, V)`` log-posteriors -> ``(ceil(T / r), V)``: log of the mean probability of each ``r`` frames."""
    if r == 1:
        return log_probs
    t, v = log_probs.shape
    pad = (-t) % r
    probs = torch.cat([log_probs.exp(), log_probs.new_zeros(pad, v)]).reshape(-1, r, v).sum(1)
    counts = torch.full((probs.shape[0], 1), float(r), dtype=probs.dtype, device=probs.device)
    counts[-1] = r - pad
    return (probs / counts).clamp_min(torch.finfo(probs.dtype).tiny).log()


def fit_frames(log_probs: torch.Tensor, frames: int, utt: str, tolerance: int = 2) -> torch.Tensor:
    """``log_probs`` (T, V) trimmed, or its last frame repeated, to ``frames``: a teacher that reads the
    audio counts frames by its own convolutions, the student by its features. More than ``tolerance``
    frames apart means the rates do not match: a :class:`FrameRateMismatchError` names the utterance."""
    t = len(log_probs)
    if abs(t - frames) > tolerance:
        raise FrameRateMismatchError(f"utterance {utt}: the teacher gives {t} frames at the student's rate, "
                                     f"the student {frames}; check both frame rates")
    if t >= frames:
        return log_probs[:frames]
    return torch.cat([log_probs, log_probs[-1:].expand(frames - t, -1)])
