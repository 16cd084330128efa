"""What every stage shares: its paths, its stamp (fingerprint, skip-if-done, done) and the check that
its inputs on disk were made for the settings configured now.

A unit's fingerprint comes from the config alone (asr_kd.stages.plan), so a stage compares each
input's stamp with what the config says it should be: a missing input names the stage to run; an
input made for other settings (a teacher trained with another seed, a cache of another teacher)
is refused with the setting that changed and the stage to re-run. ``force=true`` redoes a stage but
never makes it use stale inputs. ``stage=all`` runs the stages in order, so it redoes what changed.

Files are checked too: a unit's bundle (``models/<name>/model.pt`` of a teacher or student) must
match its recorded checksum (asr_kd.integrity) whenever the unit is found up to date or read as an
input, so a changed or corrupted model is refused, never skipped over or read. Fingerprints stay
config-only (existing experiments keep theirs); file content is checked, not fingerprinted.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig
from torch import nn

from asr_kd.config import instantiate
from asr_kd.data.dataset import UtteranceDataset
from asr_kd.data.tokenizer import Tokenizer
from asr_kd.data.vocabulary import load_tokenizer
from asr_kd.distill.cache import check_complete, missing_shards, read_index
from asr_kd.distill.objectives import Objective
from asr_kd.distill.teacher_cache import model_name
from asr_kd.errors import MissingUpstreamError, StaleUpstreamError
from asr_kd.features.cmvn import GlobalCMVN
from asr_kd.features.store import FeatureStore
from asr_kd.integrity import verify_checksum
from asr_kd.models.bundle import count_parameters, save_bundle
from asr_kd.paths import ExpPaths
from asr_kd.stages import PIPELINE
from asr_kd.stages.plan import Plan
from asr_kd.training import seed_everything
from asr_kd.training.distributed import barrier, is_main_process
from asr_kd.training.loop import TrainConfig, train
from asr_kd.utils import read_json, write_json

__all__ = ["exp_paths", "StageStamp", "MissingUpstreamError", "StaleUpstreamError", "share_upstream",
           "ModelToFit", "fit_and_save"]

log = logging.getLogger(__name__)


def exp_paths(cfg: DictConfig) -> ExpPaths:
    return ExpPaths(Path(cfg.exp_dir).absolute())


class StageStamp:
    """The stamp of one unit of work (``teacher``, ``student/student_kd``...; see asr_kd.stages.plan).

    Construction checks every upstream unit's stamp against the configured fingerprint.
    """

    def __init__(self, cfg: DictConfig, unit: str, plan: Plan | None = None):
        self.plan = plan or Plan(cfg)
        self.paths = exp_paths(cfg)
        self.name = unit
        self.force = bool(cfg.force)
        self.settings = self.plan.settings(unit)
        self.fingerprint = self.plan.fingerprint(unit)
        for up in self.plan.upstream(unit):
            self._check_upstream(up)
        self._start = time.perf_counter()

    def _read(self, unit: str) -> dict | None:
        path = self.paths.stamp(unit)
        return read_json(path) if path.exists() else None

    def _check_upstream(self, up: str) -> None:
        stamp = self._read(up)
        stage = up.split("/")[0]
        if stamp is None:
            if stage == "cache":  # a cache made in parts names the unfinished ones
                folder = self.paths.cache_dir(*up.split("/")[1:])
                if (folder / "index.json").exists():
                    index = read_index(folder)
                    check_complete(folder, index, missing_shards(folder, index))
            raise MissingUpstreamError(
                f"{self.name} needs the output of '{up}', which has not run in {self.paths.root}; "
                f"run `asr-kd stage={stage} exp_dir={self.paths.root}` first (or stage=all)"
            )
        if stamp["fingerprint"] != self.plan.fingerprint(up):
            culprit, why = self._explain(up)
            raise StaleUpstreamError(
                f"{self.name} needs '{up}', but {self.paths.root} holds one made for other settings "
                f"({culprit}: {why}); re-run `asr-kd stage={culprit.split('/')[0]}` and the stages after "
                "it with these settings, or `asr-kd stage=all`"
            )
        self._verify_files(up)

    def _verify_files(self, unit: str) -> None:
        """Check the bundle ``unit`` wrote (a teacher's or a student's ``model.pt``) against its checksum."""
        kind, _, rest = unit.partition("/")
        if kind not in ("teacher", "student"):
            return
        path = self.paths.checkpoint(rest if kind == "student" else model_name(unit))
        if path.exists():  # a pretrained teacher has none
            verify_checksum(path, f"re-run `asr-kd stage={kind} force=true exp_dir={self.paths.root}`")

    def _explain(self, unit: str) -> tuple[str, str]:
        """The unit nearest the start of the pipeline whose stamp disagrees with the config, and how."""
        stamp = self._read(unit)
        if stamp is None:
            return unit, "has not run"
        for up in self.plan.upstream(unit):
            if stamp.get("upstream", {}).get(up) != self.plan.fingerprint(up):
                return self._explain(up)
        changed = _differences(stamp.get("settings"), self.plan.settings(unit))
        return unit, ", ".join(changed[:3]) or "made by an older version"

    def is_done(self) -> bool:
        """True when finished outputs exist for exactly these settings and inputs (and no force)."""
        stamp = self._read(self.name)
        if self.force or stamp is None:
            return False
        if stamp["fingerprint"] != self.fingerprint:
            log.info("%s: settings or inputs changed since the last run; redoing it", self.name)
            return False
        self._verify_files(self.name)
        log.info(
            "%s: up to date (fingerprint %s), skipped; force=true redoes it", self.name, self.fingerprint
        )
        return True

    def done(self, info: dict | None = None) -> None:
        """Record the unit as finished: fingerprint, settings, upstream fingerprints, wall time."""
        write_json(
            self.paths.stamp(self.name),
            {
                "fingerprint": self.fingerprint,
                "settings": self.settings,
                "upstream": {up: self.plan.fingerprint(up) for up in self.plan.upstream(self.name)},
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "wall_s": round(time.perf_counter() - self._start, 3),
                "info": info or {},
            },
        )

    def undo(self) -> None:
        """Forget that the unit finished (its outputs are about to change)."""
        self.paths.stamp(self.name).unlink(missing_ok=True)


def _differences(old, new, prefix: str = "") -> list[str]:
    """``key: old -> new`` for every leaf where two settings dicts differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            out += _differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [f"{prefix.rstrip('.')} {old!r} -> {new!r}"]


#: What a per-job experiment directory of a sweep shares with the directory it was swept from (globs).
SHARED_UPSTREAM = ("data", "features", "models/teacher", "models/teacher_fold*", "models/folds*.json",
                   "cache")


def share_upstream(source: ExpPaths, job: ExpPaths) -> None:
    """Seed ``job`` with ``source``'s data, features, teachers and caches as hard links (no copy, and
    safe: every stage replaces files by rename, so a job never changes ``source``'s files)."""
    if job.root.exists() or not source.root.exists():
        return
    for pattern in SHARED_UPSTREAM:
        for part in source.root.glob(pattern):
            target = job.root / part.relative_to(source.root)
            if part.is_dir():
                shutil.copytree(part, target, copy_function=os.link)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.link(part, target)
    stamps = source.root / "stamps"
    for stamp in stamps.rglob("*.json") if stamps.is_dir() else []:
        unit = stamp.relative_to(stamps).with_suffix("").as_posix()
        if unit.split("/")[0] in PIPELINE[:PIPELINE.index("student")]:  # what SHARED_UPSTREAM holds
            (job.root / "stamps" / stamp.relative_to(stamps)).parent.mkdir(parents=True, exist_ok=True)
            os.link(stamp, job.root / "stamps" / stamp.relative_to(stamps))
    log.info("%s: a sweep job; data, features, teacher and caches shared (hard links) from %s",
             job.root, source.root)


@dataclass
class ModelToFit:
    """What training a model of this experiment starts from: the vocabulary, the features' front end
    and CMVN, and the model built from its config (input size added) after seeding, so its initial
    weights follow the seed. Teacher and students are trained the same way from here."""

    paths: ExpPaths
    tokenizer: Tokenizer
    frontend: dict
    cmvn: GlobalCMVN
    model_config: dict
    model: nn.Module

    @classmethod
    def build(cls, paths: ExpPaths, model: dict, seed: int) -> ModelToFit:
        tokenizer = load_tokenizer(paths.tokens)
        frontend = FeatureStore(paths.features("train")).frontend
        model_config = {**model, "input_dim": frontend["num_mel_bins"]}
        seed_everything(seed)
        built = instantiate(model_config, vocab_size=len(tokenizer))
        return cls(paths, tokenizer, frontend, GlobalCMVN.load(paths.cmvn), model_config, built)


def fit_and_save(stamp: StageStamp, fit: ModelToFit, objective: Objective, train_set: UtteranceDataset,
                 dev_set: str, train_cfg: TrainConfig, name: str, meta: dict | None = None,
                 after_save: Callable[[], None] | None = None,
                 stop: Callable[[int, dict[str, float]], str | None] | None = None) -> dict[str, float]:
    """Train ``fit.model`` (asr_kd.training.loop.train: resumable under the unit's fingerprint, ended
    early when ``stop`` says so), save it as the bundle ``models/<name>/model.pt`` with ``meta`` and its
    dev metrics, run ``after_save``, then mark ``stamp`` done (rank 0); returns the dev metrics."""
    paths = fit.paths
    dev = UtteranceDataset.from_exp(paths, dev_set, fit.cmvn, fit.tokenizer)
    metrics = train(fit.model, objective, train_set, dev, train_cfg, paths.model_dir(name), name=name,
                    resume_key=stamp.fingerprint, stop=stop)
    if is_main_process():
        save_bundle(paths.checkpoint(name), fit.model, fit.model_config, fit.tokenizer, fit.frontend,
                    fit.cmvn, {"dev": metrics, **(meta or {})})
        if after_save is not None:
            after_save()
        stamp.done({"params": count_parameters(fit.model), "dev": metrics})
    barrier()
    return metrics
