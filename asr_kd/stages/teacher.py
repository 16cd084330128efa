"""Stage ``teacher``: train the Conformer-CTC teacher, or adopt an existing checkpoint.

Reads:  ``features/{train,dev}``, ``features/cmvn.json``, ``data/tokens.txt``
        (or ``teacher.checkpoint=PATH``: a bundle written by this stage in another run, or the
        weights of a pretrained model: ``teacher=torchaudio_ctc|hf_ctc``, asr_kd.models.adapters).
Writes: ``models/teacher/model.pt`` (bundle; not for a pretrained teacher, whose weights stay where
        they are), ``train_log.jsonl``, ``tb/``, and ``teacher.json``: what the teacher is
        (architecture, file hash, input, frame shift, vocabulary), for the report.
Run:    ``asr-kd stage=teacher [teacher=conformer_small|conformer_large] [train.teacher.steps=N]``
        ``asr-kd stage=teacher teacher=torchaudio_ctc teacher.checkpoint=/path/model.pt``
"""

from __future__ import annotations

import logging
import shutil

from omegaconf import DictConfig

from asr_kd.config import instantiate, to_dict
from asr_kd.data.dataset import UtteranceDataset
from asr_kd.data.tokenizer import CharTokenizer
from asr_kd.data.vocabulary import load_tokenizer
from asr_kd.distill.objectives import CTCOnly
from asr_kd.errors import UserError
from asr_kd.features.cmvn import GlobalCMVN
from asr_kd.features.store import FeatureStore
from asr_kd.models.adapters import BundleTeacher, is_pretrained, load_teacher
from asr_kd.models.bundle import count_parameters, load_bundle, save_bundle
from asr_kd.stages.base import StageStamp
from asr_kd.training import seed_everything
from asr_kd.training.distributed import barrier, is_main_process
from asr_kd.training.loop import TrainConfig, train
from asr_kd.utils import atomic_path, write_json

log = logging.getLogger(__name__)


def adopt_checkpoint(path: str, paths, tokenizer: CharTokenizer, frontend: dict) -> dict:
    """Copy an existing teacher bundle in after checking it fits this experiment's data."""
    bundle = load_bundle(path)
    if bundle.tokenizer.tokens != tokenizer.tokens:
        raise UserError(f"teacher.checkpoint={path}: its vocabulary ({len(bundle.tokenizer)} tokens) differs "
                        f"from this run's {paths.tokens} ({len(tokenizer)} tokens)")
    theirs = {k: v for k, v in bundle.frontend.items() if k != "fingerprint"}
    ours = {k: v for k, v in frontend.items() if k != "fingerprint"}
    if theirs != ours:
        raise UserError(f"teacher.checkpoint={path}: it expects features {theirs}, this run extracted {ours}")
    with atomic_path(paths.checkpoint("teacher")) as tmp:
        shutil.copyfile(path, tmp)
    return {"params": count_parameters(bundle.model), "adopted_from": str(path)}


def adopt_pretrained(cfg: DictConfig, paths, tokenizer: CharTokenizer) -> dict:
    """Check a pretrained teacher loads and spells this run's vocabulary (prepared with
    ``tokenizer=teacher``); its description."""
    teacher = load_teacher(cfg.teacher, paths)
    if teacher.tokens != tokenizer.tokens:
        raise UserError(f"teacher {teacher.architecture} has {len(teacher.tokens)} tokens "
                        f"{_head(teacher.tokens)}, {paths.tokens} {len(tokenizer)} "
                        f"{_head(tokenizer.tokens)}; "
                        "prepare with tokenizer=teacher")
    paths.checkpoint("teacher").unlink(missing_ok=True)  # an earlier run's Conformer teacher is not this one
    return teacher.describe()


def _head(tokens: list[str]) -> str:
    return "(" + " ".join(repr(t) for t in tokens[:6]) + (" ...)" if len(tokens) > 6 else ")")


def run(cfg: DictConfig) -> None:
    ckpt = cfg.teacher.checkpoint
    stamp = StageStamp(cfg, "teacher")
    if stamp.is_done():
        return
    paths = stamp.paths
    tokenizer = load_tokenizer(paths.tokens)
    frontend = FeatureStore(paths.features("train")).frontend
    if is_pretrained(cfg.teacher):
        info = adopt_pretrained(cfg, paths, tokenizer)
        write_json(paths.teacher_info, info)
        stamp.done(info)
        return
    if ckpt:
        info = adopt_checkpoint(ckpt, paths, tokenizer, frontend)
        write_json(paths.teacher_info, BundleTeacher(load_bundle(paths.checkpoint("teacher"))).describe())
        stamp.done(info)
        return
    cmvn = GlobalCMVN.load(paths.cmvn)
    train_cfg = TrainConfig(**stamp.plan.teacher_train)
    model_config = {**to_dict(cfg.teacher.model), "input_dim": frontend["num_mel_bins"]}
    seed_everything(train_cfg.seed)  # before the model is built: its initial weights follow the seed
    model = instantiate(model_config, vocab_size=len(tokenizer))
    log.info("teacher: %s, %.2fM parameters", model_config["_target_"], count_parameters(model) / 1e6)
    dev = UtteranceDataset.from_exp(paths, cfg.dev_set, cmvn, tokenizer)
    metrics = train(
        model,
        CTCOnly(),
        UtteranceDataset.from_exp(paths, "train", cmvn, tokenizer),
        dev,
        train_cfg,
        paths.model_dir("teacher"),
        name="teacher",
        resume_key=stamp.fingerprint,
    )
    if is_main_process():
        meta = {"dev": metrics}
        save_bundle(paths.checkpoint("teacher"), model, model_config, tokenizer, frontend, cmvn, meta)
        write_json(paths.teacher_info, BundleTeacher(load_bundle(paths.checkpoint("teacher"))).describe())
        stamp.done({"params": count_parameters(model), "dev": metrics})
    barrier()
