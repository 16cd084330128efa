"""Stage ``student``: train the streaming student(s), with CTC only and with distillation.

Reads:  ``features/{train,dev}``, ``features/cmvn.json``, ``data/tokens.txt``; for KD systems also
        ``cache/`` (checked against the current teacher and features) and ``models/teacher``.
Writes: ``models/<system>/model.pt`` for each system in ``student_systems`` (``student_ctc`` is
        the CTC-only baseline, ``alpha = 0``; every other system distils with ``distill.alpha``).
Run:    ``asr-kd stage=student [distill.temperature=2] [distill.alpha=0.5] [student=NAME]``

Loss: ``(1 - alpha) * CTC + alpha * KD`` (asr_kd.distill.loss), both per-utterance sums; with
``distill.alpha_final`` set, alpha moves linearly from ``distill.alpha`` to it over training. With
``distill.sequence_kd=true`` the CTC term of distilled systems is trained on the teacher's greedy
1-best (read from the cache) instead of the transcripts: sequence-level KD.
"""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from asr_kd.config import instantiate, to_dict
from asr_kd.data.dataset import UtteranceDataset
from asr_kd.data.vocabulary import load_tokenizer
from asr_kd.distill.cache import PosteriorCache
from asr_kd.distill.loss import FrameRateMismatchError, align_teacher, ctc_loss, distill_loss
from asr_kd.features.cmvn import GlobalCMVN
from asr_kd.features.store import FeatureStore
from asr_kd.models.bundle import count_parameters, load_bundle, save_bundle
from asr_kd.stages.base import StageStamp
from asr_kd.stages.cache import expected_meta
from asr_kd.training.distributed import barrier, is_main_process
from asr_kd.training.loop import TrainConfig, train

log = logging.getLogger(__name__)

BASELINE = "student_ctc"


def alpha_at(alpha: float, alpha_final: float | None, progress: float) -> float:
    """The KD weight after ``progress`` (0..1) of training: ``alpha`` throughout, or moving linearly
    from ``alpha`` to ``alpha_final`` (e.g. 0.9 -> 0.1: the teacher's soft targets lead early,
    the transcripts decide late)."""
    return alpha if alpha_final is None else alpha + (alpha_final - alpha) * progress


def make_objective(alpha: float, distill: DictConfig):
    """``(1 - alpha) CTC + alpha KD`` (alpha scheduled by ``distill.alpha_final``) as a training-loop
    loss function; ``alpha = 0`` is CTC only."""
    alpha_final = distill.get("alpha_final") if alpha > 0 else None

    def objective(logits, lengths, batch, progress):
        ctc = ctc_loss(logits, lengths, batch.targets, batch.target_lengths)
        if alpha == 0:
            return ctc, {"ctc": ctc.item()}
        weight = alpha_at(alpha, alpha_final, progress)
        kd_lengths = align_teacher(batch.ids, lengths, batch.teacher_lengths)
        kd = distill_loss(
            logits,
            kd_lengths,
            batch.teacher_values,
            batch.teacher_indices,
            method=distill.method,
            temperature=distill.temperature,
            topk_mode=distill.topk_mode,
            shift_frames=distill.shift_frames,
            blank_weight=distill.blank_weight,
            blank_threshold=distill.blank_threshold,
        )
        return (1 - weight) * ctc + weight * kd, {"ctc": ctc.item(), "kd": kd.item(), "alpha": weight}

    return objective


def open_cache(paths, student_subsampling: int, frame_shift_ms: float, k) -> PosteriorCache:
    """The cache, checked against this experiment's teacher, features and the student's frame rate."""
    teacher = load_bundle(paths.checkpoint("teacher"))
    cache = PosteriorCache(paths.cache_dir, expected=expected_meta(paths, teacher, k))
    student_shift = student_subsampling * frame_shift_ms
    if student_shift != cache.meta["frame_shift_ms"]:
        raise FrameRateMismatchError(
            f"the student emits a frame every {student_shift} ms, the teacher cache every "
            f"{cache.meta['frame_shift_ms']} ms; give the student the teacher's subsampling"
        )
    return cache


def train_system(cfg: DictConfig, system: str) -> None:
    alpha = 0.0 if system == BASELINE else float(cfg.distill.alpha)
    settings = {"student": cfg.student, "train": cfg.train.student, "alpha": alpha}
    upstream = ("features",)
    if alpha > 0:
        settings["distill"] = cfg.distill
        upstream = ("features", "cache")
    stamp = StageStamp(cfg, f"student/{system}", settings, upstream=upstream)
    if stamp.is_done():
        return
    paths = stamp.paths
    tokenizer = load_tokenizer(paths.tokens)
    frontend = FeatureStore(paths.features("train")).frontend
    cmvn = GlobalCMVN.load(paths.cmvn)
    model_config = {**to_dict(cfg.student.model), "input_dim": frontend["num_mel_bins"]}
    model = instantiate(model_config, vocab_size=len(tokenizer))
    log.info("%s: %.2fM parameters, alpha %.2f", system, count_parameters(model) / 1e6, alpha)
    cache = None
    train_cfg = TrainConfig(**to_dict(cfg.train.student))
    if alpha > 0:
        cache = open_cache(paths, model.subsampling_factor, frontend["frame_shift_ms"], cfg.cache.k)
        if train_cfg.spec_augment and train_cfg.spec_augment.get("time_warp", 0) > 0:
            log.warning("%s: time warping moves frames away from their cached teacher targets; "
                        "it is off for this distilled system (masks stay on)", system)
            train_cfg.spec_augment = {**train_cfg.spec_augment, "time_warp": 0}
    sequence_kd = alpha > 0 and bool(cfg.distill.sequence_kd)
    if sequence_kd:
        log.info("%s: sequence-level KD: CTC targets are the teacher's 1-best from the cache", system)
    metrics = train(
        model,
        make_objective(alpha, cfg.distill),
        UtteranceDataset.from_exp(paths, "train", cmvn, tokenizer, cache, pseudo_labels=sequence_kd),
        UtteranceDataset.from_exp(paths, cfg.dev_set, cmvn, tokenizer),
        train_cfg,
        paths.model_dir(system),
        name=system,
        resume_key=stamp.fingerprint,
    )
    if is_main_process():
        save_bundle(paths.checkpoint(system), model, model_config, tokenizer, frontend, cmvn,
                    {"dev": metrics, "alpha": alpha})
        stamp.done({"params": count_parameters(model), "dev": metrics, "alpha": alpha})
    barrier()


def run(cfg: DictConfig) -> None:
    for system in cfg.student_systems:
        train_system(cfg, system)
