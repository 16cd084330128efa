"""Training objectives of a system: what ``conf/distill/*.yaml`` builds (``_target_``).

An objective is called as the training loop's loss function,
``objective(logits (B, T, V), lengths (B,), batch, progress) -> (loss, {name: value})``
(asr_kd.training.loop.LossFn). ``needs_teacher`` says whether the batches must carry the cached
teacher posteriors, ``pseudo_labels`` which utterances' CTC targets are the teacher's 1-best (read
off the cache, asr_kd.distill.targets): ``none``, ``unlabeled`` (untranscribed audio only) or
``all``. A new method is one class here and one yaml file; nothing else changes, and the CTC-only
baseline is an objective like the others.

Distilling objectives mix ``(1 - alpha) CTC + alpha D`` per utterance, averaged over the batch;
with ``alpha_final`` set, alpha moves linearly from ``alpha`` to it over training (e.g. 0.9 -> 0.1:
the teacher's soft targets lead early, the transcripts decide late). An utterance without
transcript (``batch.labelled`` False) has no CTC term unless ``hard_targets`` gives it the
teacher's 1-best, and a teacher 1-best whose confidence is below ``min_confidence`` is left out of
the CTC term too (Distil-Whisper filters its pseudo-labels the same way, against a WER threshold).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from asr_kd.data.dataset import Batch
from asr_kd.distill.loss import align_teacher, ctc_loss, guided_ctc_loss, kd_loss
from asr_kd.errors import ConfigError

__all__ = ["Objective", "CTCOnly", "Distillation", "FrameKD", "GuidedCTC"]


class Objective:
    """Base of every objective (see module docstring)."""

    needs_teacher: bool = False
    pseudo_labels: str = "none"
    pseudo_lm_weight: float | None = None
    #: Settings added after systems were fingerprinted, with the value that means "as before": left out
    #: of a system's resolved objective at that value (asr_kd.stages.plan), so existing experiments
    #: keep their fingerprints and are not retrained.
    LATER_SETTINGS: ClassVar[dict] = {}

    def __call__(
        self, logits: torch.Tensor, lengths: torch.Tensor, batch: Batch, progress: float
    ) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError


@dataclass
class CTCOnly(Objective):
    """Plain CTC on the batch's targets: the teacher's loss, and the baseline student's."""

    def __call__(self, logits, lengths, batch, progress):
        ctc = ctc_loss(logits, lengths, batch.targets, batch.target_lengths, weights=batch.labelled.float())
        return ctc, {"ctc": ctc.item()}


@dataclass
class Distillation(Objective):
    """``(1 - alpha) CTC + alpha D`` with the distillation term ``D`` of a subclass.

    ``hard_targets``: what the CTC term learns. ``transcripts``: the transcripts (untranscribed
    utterances get none); ``unlabeled``: the teacher's greedy 1-best for untranscribed utterances
    (hard pseudo-labels, noisy-student style), transcripts elsewhere; ``teacher``: the 1-best
    everywhere (sequence-level KD; Kim & Rush 2016). ``min_confidence`` drops 1-best targets whose
    teacher confidence (asr_kd.distill.targets.teacher_confidence) is lower. ``pseudo_lm_weight``: the
    1-best is the teacher's posteriors decoded by beam search with the train transcripts' word LM
    at this weight (the stage student decodes them once), not greedy: the LM's knowledge goes into
    the targets, as in noisy-student training (Park et al. 2020).
    """

    alpha: float = 0.5
    alpha_final: float | None = None
    hard_targets: str = "transcripts"
    min_confidence: float = 0.0
    pseudo_lm_weight: float | None = None
    needs_teacher = True

    #: ``hard_targets`` -> which utterances' CTC targets come from the teacher (``pseudo_labels``).
    HARD_TARGETS = {"transcripts": "none", "unlabeled": "unlabeled", "teacher": "all"}

    def __post_init__(self):
        for name in ("alpha", "alpha_final", "min_confidence"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must lie in [0, 1], not {value}")
        if self.hard_targets not in self.HARD_TARGETS:
            raise ConfigError(f"hard_targets must be one of {sorted(self.HARD_TARGETS)}, "
                              f"not {self.hard_targets!r}")
        self.pseudo_labels = self.HARD_TARGETS[self.hard_targets]
        weight = self.pseudo_lm_weight
        if weight is not None and (weight < 0 or self.pseudo_labels == "none"):
            raise ConfigError(f"pseudo_lm_weight ({weight}) must be >= 0 and needs hard_targets that use "
                              f"the teacher's 1-best (unlabeled or teacher), not {self.hard_targets!r}")

    def alpha_at(self, progress: float) -> float:
        """The weight of ``D`` after ``progress`` (0..1) of training."""
        if self.alpha_final is None:
            return self.alpha
        return self.alpha + (self.alpha_final - self.alpha) * progress

    def term(self, logits: torch.Tensor, lengths: torch.Tensor, batch: Batch) -> torch.Tensor:
        """``D`` over the ``lengths`` frames where teacher and student align."""
        raise NotImplementedError

    def ctc_weights(self, batch: Batch) -> torch.Tensor:
        """(B,) 1 for utterances whose CTC targets count: transcripts, or a confident enough 1-best."""
        confident = batch.teacher_confidence >= self.min_confidence
        return torch.where(batch.pseudo, confident, batch.labelled).float()

    def __call__(self, logits, lengths, batch, progress):
        weights = self.ctc_weights(batch)
        ctc = ctc_loss(logits, lengths, batch.targets, batch.target_lengths, weights=weights)
        weight = self.alpha_at(progress)
        distill = self.term(logits, align_teacher(batch.ids, lengths, batch.teacher_lengths), batch)
        loss = (1 - weight) * ctc + weight * distill
        return loss, {"ctc": ctc.item(), "kd": distill.item(), "alpha": weight,
                      "ctc_utts": weights.mean().item()}


@dataclass
class FrameKD(Distillation):
    """Frame-level KL to the cached teacher posteriors (asr_kd.distill.loss.kd_loss: temperature,
    top-k handling, delayed targets (``shift_frames``, or the best of ``shift_frames ..
    shift_frames + delay_window`` per utterance, or per token with ``delay_per="token"``), blank
    weighting; ``require_agreement``: KD only on utterances whose student greedy 1-best is already
    the teacher's; ``symmetric``: a frame is blank-dominated
    only when teacher *and* student say so, the frame selection that lets KD train without CTC,
    Hilmes et al. 2025)."""

    temperature: float = 4.0
    topk_mode: str = "residual"
    shift_frames: int = 0
    blank_weight: float = 1.0
    blank_threshold: float = 0.9
    symmetric: bool = False
    delay_window: int = 0
    delay_per: str = "utterance"
    require_agreement: bool = False
    LATER_SETTINGS: ClassVar[dict] = {"delay_window": 0, "delay_per": "utterance", "require_agreement": False}

    def __post_init__(self):
        super().__post_init__()
        if self.topk_mode not in ("residual", "renorm"):
            raise ConfigError(f"topk_mode must be 'residual' or 'renorm', not {self.topk_mode!r}")
        if self.temperature <= 0:
            raise ConfigError(f"temperature must be positive, not {self.temperature}")
        if self.delay_per not in ("utterance", "token"):
            raise ConfigError(f"delay_per must be 'utterance' or 'token', not {self.delay_per!r}")
        if self.shift_frames < 0 or self.delay_window < 0:
            raise ConfigError(f"shift_frames ({self.shift_frames}) and delay_window ({self.delay_window}) "
                              "must be >= 0 frames")

    def term(self, logits, lengths, batch):
        return kd_loss(logits, lengths, batch.teacher_values, batch.teacher_indices, self.temperature,
                       self.topk_mode, self.shift_frames, self.blank_weight, self.blank_threshold,
                       self.symmetric, self.delay_window, self.delay_per, self.require_agreement)


@dataclass
class GuidedCTC(Distillation):
    """Guided CTC (Kurata & Audhkhasi 2019): the student is pushed to spike on the teacher's best
    token where the teacher spikes, ``shift_frames`` later (asr_kd.distill.loss.guided_ctc_loss)."""

    shift_frames: int = 1

    def term(self, logits, lengths, batch):
        return guided_ctc_loss(logits, lengths, batch.teacher_values, batch.teacher_indices,
                               self.shift_frames)
