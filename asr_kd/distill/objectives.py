"""Training objectives of a system: what ``conf/distill/*.yaml`` builds (``_target_``).

An objective is called as the training loop's loss function,
``objective(logits (B, T, V), lengths (B,), batch, progress) -> (loss, {name: value})``
(asr_kd.training.loop.LossFn). ``needs_teacher`` says whether the batches must carry the cached
teacher posteriors, ``pseudo_labels`` whether the CTC targets are the teacher's 1-best (read off the
cache, asr_kd.distill.targets) instead of the transcripts. A new method is one class here and one
yaml file; nothing else changes, and the CTC-only baseline is an objective like the others.

Distilling objectives mix ``(1 - alpha) CTC + alpha D``, both per-utterance sums averaged over the
batch; with ``alpha_final`` set, alpha moves linearly from ``alpha`` to it over training (e.g.
0.9 -> 0.1: the teacher's soft targets lead early, the transcripts decide late).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from asr_kd.data.dataset import Batch
from asr_kd.distill.loss import align_teacher, ctc_loss, guided_ctc_loss, kd_loss
from asr_kd.errors import ConfigError

__all__ = ["Objective", "CTCOnly", "Distillation", "FrameKD", "GuidedCTC"]


class Objective:
    """Base of every objective (see module docstring)."""

    needs_teacher: bool = False
    pseudo_labels: bool = False

    def __call__(
        self, logits: torch.Tensor, lengths: torch.Tensor, batch: Batch, progress: float
    ) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError


@dataclass
class CTCOnly(Objective):
    """Plain CTC on the batch's targets: the teacher's loss, and the baseline student's."""

    def __call__(self, logits, lengths, batch, progress):
        ctc = ctc_loss(logits, lengths, batch.targets, batch.target_lengths)
        return ctc, {"ctc": ctc.item()}


@dataclass
class Distillation(Objective):
    """``(1 - alpha) CTC + alpha D`` with the distillation term ``D`` of a subclass.

    ``sequence_kd``: the CTC term learns the teacher's greedy 1-best instead of the transcript
    (sequence-level KD; Kim & Rush 2016).
    """

    alpha: float = 0.5
    alpha_final: float | None = None
    sequence_kd: bool = False
    needs_teacher = True

    def __post_init__(self):
        for name in ("alpha", "alpha_final"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must lie in [0, 1], not {value}")
        self.pseudo_labels = self.sequence_kd

    def alpha_at(self, progress: float) -> float:
        """The weight of ``D`` after ``progress`` (0..1) of training."""
        if self.alpha_final is None:
            return self.alpha
        return self.alpha + (self.alpha_final - self.alpha) * progress

    def term(self, logits: torch.Tensor, lengths: torch.Tensor, batch: Batch) -> torch.Tensor:
        """``D`` over the ``lengths`` frames where teacher and student align."""
        raise NotImplementedError

    def __call__(self, logits, lengths, batch, progress):
        ctc = ctc_loss(logits, lengths, batch.targets, batch.target_lengths)
        weight = self.alpha_at(progress)
        distill = self.term(logits, align_teacher(batch.ids, lengths, batch.teacher_lengths), batch)
        loss = (1 - weight) * ctc + weight * distill
        return loss, {"ctc": ctc.item(), "kd": distill.item(), "alpha": weight}


@dataclass
class FrameKD(Distillation):
    """Frame-level KL to the cached teacher posteriors (asr_kd.distill.loss.kd_loss: temperature,
    top-k handling, delayed targets, blank weighting)."""

    temperature: float = 4.0
    topk_mode: str = "residual"
    shift_frames: int = 0
    blank_weight: float = 1.0
    blank_threshold: float = 0.9

    def __post_init__(self):
        super().__post_init__()
        if self.topk_mode not in ("residual", "renorm"):
            raise ConfigError(f"topk_mode must be 'residual' or 'renorm', not {self.topk_mode!r}")
        if self.temperature <= 0:
            raise ConfigError(f"temperature must be positive, not {self.temperature}")

    def term(self, logits, lengths, batch):
        return kd_loss(logits, lengths, batch.teacher_values, batch.teacher_indices, self.temperature,
                       self.topk_mode, self.shift_frames, self.blank_weight, self.blank_threshold)


@dataclass
class GuidedCTC(Distillation):
    """Guided CTC (Kurata & Audhkhasi 2019): the student is pushed to spike on the teacher's best
    token where the teacher spikes, ``shift_frames`` later (asr_kd.distill.loss.guided_ctc_loss)."""

    shift_frames: int = 1

    def term(self, logits, lengths, batch):
        return guided_ctc_loss(logits, lengths, batch.teacher_values, batch.teacher_indices,
                               self.shift_frames)
