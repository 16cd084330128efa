"""Stage ``teacher``: train the Conformer-CTC teacher, or adopt an existing checkpoint; and the
cross-fitting fold teachers when a cache asks for them (``cache.teachers=crossfit|ensemble``).

Reads:  ``features/{train,dev}``, ``features/cmvn.json``, ``data/tokens.txt``, ``data/train.jsonl``
        (or ``teacher.checkpoint=PATH``: a bundle written by this stage in another run, or the
        weights of a pretrained model: ``teacher=torchaudio_ctc|hf_ctc``, asr_kd.models.adapters).
Writes: ``models/teacher/model.pt`` (bundle; not for a pretrained teacher, whose weights stay where
        they are), ``train_log.jsonl``, ``tb/``, and ``teacher.json``: what the teacher is
        (architecture, file hash, input, frame shift, vocabulary), for the report; for
        ``cache.folds=K``, ``models/folds<K>.json`` (asr_kd.data.folds) and ``models/teacher_fold<i>of<K>/``.
Run:    ``asr-kd stage=teacher [teacher=conformer_small|conformer_large] [train.teacher.steps=N]``
        ``asr-kd stage=teacher teacher=torchaudio_ctc teacher.checkpoint=/path/model.pt``

Fold teacher ``i`` is the teacher's model and recipe (``train.teacher``, seed + i) trained on train
minus fold ``i`` (views of a clip follow it), normalised with the CMVN of all of train; each costs
about as much as the teacher (the same steps), so K folds cost K teachers more.
"""

from __future__ import annotations

import logging
import shutil

from omegaconf import DictConfig

from asr_kd.config import to_dict
from asr_kd.data.dataset import UtteranceDataset
from asr_kd.data.folds import assign_folds, fold_of
from asr_kd.data.manifest import read_manifest
from asr_kd.data.tokenizer import Tokenizer
from asr_kd.data.vocabulary import load_tokenizer
from asr_kd.distill.objectives import CTCOnly
from asr_kd.distill.teacher_cache import model_name
from asr_kd.errors import UserError
from asr_kd.features.store import FeatureStore
from asr_kd.integrity import checksummed, discard
from asr_kd.models.adapters import BundleTeacher, is_pretrained, load_teacher
from asr_kd.models.bundle import count_parameters, load_bundle
from asr_kd.stages.base import ModelToFit, StageStamp, fit_and_save
from asr_kd.stages.plan import Plan
from asr_kd.training.loop import TrainConfig
from asr_kd.utils import write_json

log = logging.getLogger(__name__)


def adopt_checkpoint(path: str, paths, tokenizer: Tokenizer, frontend: dict) -> dict:
    """Copy an existing teacher bundle in after checking it fits this experiment's data."""
    bundle = load_bundle(path)
    if bundle.tokenizer.tokens != tokenizer.tokens:
        raise UserError(f"teacher.checkpoint={path}: its vocabulary ({len(bundle.tokenizer)} tokens) differs "
                        f"from this run's {paths.tokens} ({len(tokenizer)} tokens)")
    theirs = {k: v for k, v in bundle.frontend.items() if k != "fingerprint"}
    ours = {k: v for k, v in frontend.items() if k != "fingerprint"}
    if theirs != ours:
        raise UserError(f"teacher.checkpoint={path}: it expects features {theirs}, this run extracted {ours}")
    with checksummed(paths.checkpoint("teacher")) as tmp:
        shutil.copyfile(path, tmp)
    return {"params": count_parameters(bundle.model), "adopted_from": str(path)}


def adopt_pretrained(cfg: DictConfig, paths, tokenizer: Tokenizer) -> dict:
    """Check a pretrained teacher loads and spells this run's vocabulary (prepared with
    ``tokenizer=teacher``); its description."""
    teacher = load_teacher(cfg.teacher, paths)
    if teacher.tokens != tokenizer.tokens:
        raise UserError(f"teacher {teacher.architecture} has {len(teacher.tokens)} tokens "
                        f"{_head(teacher.tokens)}, {paths.tokens} {len(tokenizer)} "
                        f"{_head(tokenizer.tokens)}; "
                        "prepare with tokenizer=teacher")
    discard(paths.checkpoint("teacher"))  # an earlier run's Conformer teacher is not this one
    return teacher.describe()


def _record_bundle_teacher(paths) -> None:
    """``models/teacher/teacher.json``: what the bundle at ``models/teacher/model.pt`` is, for the report."""
    write_json(paths.teacher_info, BundleTeacher(load_bundle(paths.checkpoint("teacher"))).describe())


def _head(tokens: list[str]) -> str:
    return "(" + " ".join(repr(t) for t in tokens[:6]) + (" ...)" if len(tokens) > 6 else ")")


def run(cfg: DictConfig) -> None:
    plan = Plan(cfg)
    _main_teacher(cfg, plan)
    for unit in plan.fold_units:
        _fold_teacher(cfg, plan, unit)


def _main_teacher(cfg: DictConfig, plan: Plan) -> None:
    ckpt = cfg.teacher.checkpoint
    stamp = StageStamp(cfg, "teacher", plan)
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
        _record_bundle_teacher(paths)
        stamp.done(info)
        return
    _train_teacher(cfg, stamp, "teacher", None)


def _fold_teacher(cfg: DictConfig, plan: Plan, unit: str) -> None:
    """Teacher ``unit`` (``teacher/fold<i>of<K>``) on every train utterance outside fold i."""
    stamp = StageStamp(cfg, unit, plan)
    if stamp.is_done():
        return
    fold, k = plan.fold_units[unit]
    utts = read_manifest(stamp.paths.manifest("train"))
    folds = assign_folds(utts, k)
    write_json(stamp.paths.folds(k), folds)  # deterministic: the same bytes for every fold's run
    kept = [u for u in utts if fold_of(folds, u.id) not in (None, fold)]
    log.info("%s: fold %d of %d (by %s) held out, %d of %d train utterances kept", unit, fold, k,
             folds["by"], len(kept), len(utts))
    _train_teacher(cfg, stamp, model_name(unit), kept)


def _train_teacher(cfg: DictConfig, stamp: StageStamp, name: str, utts: list | None) -> None:
    """Train the teacher's model with the teacher's recipe (seed: the unit's) as ``models/<name>``,
    on ``utts`` (None: all of train)."""
    paths = stamp.paths
    train_cfg = TrainConfig(**{**stamp.plan.teacher_train, "seed": stamp.settings["train"]["seed"]})
    fit = ModelToFit.build(paths, to_dict(cfg.teacher.model), train_cfg.seed)
    log.info("%s: %s, %.2fM parameters", name, fit.model_config["_target_"],
             count_parameters(fit.model) / 1e6)
    data = (UtteranceDataset.from_exp(paths, "train", fit.cmvn, fit.tokenizer) if utts is None
            else UtteranceDataset(utts, FeatureStore(paths.features("train")), fit.cmvn, fit.tokenizer))
    fit_and_save(stamp, fit, CTCOnly(), data, cfg.dev_set, train_cfg, name,
                 after_save=(lambda: _record_bundle_teacher(paths)) if name == "teacher" else None)
