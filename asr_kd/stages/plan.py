"""The experiment plan: the systems of a run, the teacher caches they read, and every unit of work
with the settings it depends on and the units it reads, all resolved from the config alone.

Units of work (a stamp each, ``stamps/<unit>.json``)::

    prepare -> features -> teacher -> cache/<cache>/<split> -> student/<system> -> decode/<system> -> score
                          teacher -> decode/teacher -> decode/<system> (symbol delays against its alignments)
                       -> teacher/fold<i>of<K> ->         student/<system> -> export/<system> -> score
    export/<system>: ONNX graphs of a streaming system of ``export.systems`` and their decodes of the
    test sets; of a name that is no system of the plan, whatever models/<name>/model.pt holds (a
    model copied in: its file hash is the input, and the report does not cover it)

A **system** is a student trained one way. ``systems.<name>`` in the config holds, each optional:
``objective`` (a ``distill/`` option: a ``_target_`` that builds the loss; ``ctc_only`` is one like
any other; default: the top-level ``distill``), ``student`` (a ``student/`` option; default: the
top-level ``student``), ``train`` (overrides of ``train.student``: steps, seed...), ``splits`` (what
it trains on; default ``[train]``; ``unlabeled`` is the untranscribed audio, ``unlabeled:1200`` its
first 1,200 utterances), ``labelled`` (e.g. 0.25: it sees the transcripts of the first quarter of each
split only, the rest is untranscribed audio to it, while the teacher trained on them all: the
strong-teacher, small-labelled-set regime; an objective that reads no teacher drops that rest),
``cache`` (overrides of the top-level ``cache``: ``k``, ``teachers``...) and
``seeds`` (``[1, 2]``: repeats of the system named ``<name>_seed1``, ``<name>_seed2``, each with
that ``train.seed``). One rule: every part is the run's setting with the system's own on top.
``objective`` and ``student`` name an option (``student: conformer_full_small``), or an option with
changes (``student: {from: conformer_stream_small, model: {chunk_frames: 4}}``), or hold a composed
node (``objective: ${distill}``); ``student_overrides`` (a recipe's ``{model: {dropout: 0.0}}``) is
merged into every system's student, below the system's own changes.
An objective that reads teacher posteriors gets the cache of its settings, ``cache/teacher_k<k>/``
(or ``teacher_full``); systems that need the same cache share it, so k=4, k=16 and full posteriors
coexist. ``cache.teachers=crossfit`` names ``crossfit<K>_k<k>`` (each train clip's posteriors from
the fold teacher ``teacher/fold<i>of<K>`` that never trained on it) and ``ensemble`` names
``ensemble<K>_k<k>`` (the average of the teacher and the K fold teachers); the fold teachers
are units of their own, trained only when such a cache is asked for (asr_kd.stages.teacher).
A unit's fingerprint hashes its settings and its upstream units' fingerprints, so a stage knows,
before it reads anything, whether what is on disk was made for the settings configured now.

**Distil to a budget.** With a limit in ``target`` (asr_kd.scoring.target), the plan adds candidate
systems ``cand_<student>_c<chunk>`` (each of ``target.students`` at each of ``target.chunks``,
``dynamic_chunks`` off), trained like ``systems.<target.like>`` (its objective, splits, cache, train),
after the systems of the config; candidates whose latency or size bound misses the budget, or that do
not fit in ``target.max_hours``, are dropped before training (``Plan.candidates`` keeps them with the
reason). The kept ones are exported too, and the score unit depends on ``target``. With every limit
null, nothing here changes: no candidate, and every fingerprint as before.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from asr_kd.config import check_targets, check_types, compose_option, instantiate, to_dict
from asr_kd.data.dataset import parse_split
from asr_kd.data.views import view_settings
from asr_kd.decoding.streaming import algorithmic_latency_ms
from asr_kd.distill.objectives import Objective
from asr_kd.distill.teacher_cache import TEACHER_RULES, CacheSettings, CacheSpec, cache_name
from asr_kd.errors import ConfigError, MissingFileError
from asr_kd.export.onnx import FORMAT_VERSION as EXPORT_FORMAT
from asr_kd.models.adapters import is_pretrained
from asr_kd.models.bundle import count_parameters
from asr_kd.paths import ExpPaths
from asr_kd.scoring.report import VARIANTS
from asr_kd.scoring.target import Candidate, Target, choose_candidates
from asr_kd.stages import PIPELINE
from asr_kd.training.loop import TrainConfig
from asr_kd.utils import file_hash, fingerprint, path_hash

__all__ = ["System", "Plan", "SYSTEM_KEYS"]

#: The tokenizer that adopts a pretrained teacher's labels (conf/tokenizer/teacher.yaml).
TEACHER_TOKENIZER = "asr_kd.models.adapters.teacher_tokenizer"
#: The keys a ``systems.<name>`` node may hold.
SYSTEM_KEYS = ("objective", "student", "train", "splits", "labelled", "cache", "seeds")
@dataclass(frozen=True)
class System:
    """One student system, resolved: everything that decides its weights."""

    name: str
    student: dict  # {"model": {"_target_": ..., ...}}
    objective: dict  # {"_target_": ..., ...}
    train: dict  # TrainConfig fields
    splits: tuple[str, ...]
    cache: str | None  # the CacheSpec it reads, None when its objective needs no teacher
    labelled: float | None = None  # share of each split whose transcripts it sees (None: all)

    @property
    def sources(self) -> tuple[str, ...]:
        """The splits it reads (``unlabeled`` for ``unlabeled:1200``): what its cache must cover."""
        return _sources(self.splits)

    @property
    def config(self) -> dict:
        """The resolved system config (recorded in stamps and reports)."""
        labelled = {} if self.labelled is None else {"labelled": self.labelled}  # absent: fingerprints kept
        return {"student": self.student, "objective": self.objective, "train": self.train,
                "splits": list(self.splits), "cache": self.cache, **labelled}

    def build_objective(self) -> Objective:
        return instantiate(self.objective)

    def train_config(self) -> TrainConfig:
        return TrainConfig(**self.train)


def _typed_train(node, where: str) -> dict:
    """``node`` checked against :class:`TrainConfig` (types, unknown keys, values), as a plain dict."""
    return to_dict(check_types(TrainConfig, node, where))


def _learned(train: dict) -> dict:
    """Training settings that decide the weights (fingerprinted), without the run-time ones."""
    return {k: v for k, v in train.items() if k not in TrainConfig.RUNTIME_KEYS}


def _sources(splits: tuple[str, ...]) -> tuple[str, ...]:
    """The split names behind ``splits`` (``unlabeled:1200`` -> ``unlabeled``), each once."""
    return tuple(dict.fromkeys(parse_split(s)[0] for s in splits))


def _option(group: str, value, default: DictConfig, where: str) -> tuple[DictConfig, DictConfig]:
    """A system's ``objective`` or ``student`` as (the option it starts from, its changes): an option's
    name; ``{from: OPTION, ...changes}``; changes to the run's ``default`` (a mapping that names no
    ``_target_``); a composed node as it is (one that does, e.g. ``${distill}``); or None (``default``)."""
    none = OmegaConf.create({})
    if value is None:
        return default, none
    if isinstance(value, str):
        return compose_option(group, value, where), none
    if not isinstance(value, DictConfig):
        raise ConfigError(f"{where}: name a {group}/ option (or {{from: OPTION, ...}}), not {value!r}")
    if "from" in value:
        return compose_option(group, value["from"], where), OmegaConf.masked_copy(
            value, [k for k in value if k != "from"])
    names_target = "_target_" in value or any(isinstance(v, DictConfig) and "_target_" in v
                                              for v in value.values())
    return (value, none) if names_target else (default, value)


def _expand_seeds(systems: DictConfig) -> dict[str, DictConfig]:
    """``systems`` with each system's ``seeds`` expanded into repeats named ``<name>_seed<s>`` (placed
    after it, ``train.seed`` set), every node checked to be a mapping of :data:`SYSTEM_KEYS`."""
    nodes: dict[str, DictConfig] = {}
    for name, node in systems.items():
        where = f"systems.{name}"
        if not isinstance(node, DictConfig):
            raise ConfigError(f"{where}: a system is a mapping of {', '.join(SYSTEM_KEYS)}, not {node!r}")
        unknown = sorted(set(node) - set(SYSTEM_KEYS))
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown}; a system holds {', '.join(SYSTEM_KEYS)}")
        seeds = node.get("seeds") or []
        base = OmegaConf.masked_copy(node, [k for k in node if k != "seeds"])
        nodes[name] = base
        for seed in seeds:
            if not isinstance(seed, int) or isinstance(seed, bool):
                raise ConfigError(f"{where}.seeds: training seeds are integers, got {seed!r}")
            repeat = f"{name}_seed{seed}"
            if repeat in systems or repeat in nodes:
                raise ConfigError(f"{where}.seeds: {repeat} is already a system; drop it or the seed")
            nodes[repeat] = OmegaConf.merge(base, {"train": {"seed": seed}})
    return nodes


def _check_decode_names(systems: list[str]) -> None:
    """Refuse a system named like another model's decode (``a_lm`` beside ``a``): both would write and
    score the same decode, and the report would mix their numbers."""
    for model in ["teacher", *systems]:
        for suffix in filter(None, VARIANTS):
            name = model + suffix
            if name in systems:
                raise ConfigError(f"systems.{name}: the name of the {suffix} decode of {model}; the report "
                                  f"would mix the two: rename the system (e.g. without the {suffix} ending)")


class Plan:
    """The systems, caches and unit fingerprints of one config (see module docstring)."""

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        self.teacher_train = _typed_train(cfg.train.teacher, "train.teacher")
        _typed_train(cfg.train.student, "train.student")  # named as the user wrote it, before any system
        view_settings(to_dict(cfg.data))  # augmented views checked before any work
        instantiate(cfg.features.frontend, sample_rate=cfg.sample_rate)  # and the front end's settings
        check_targets(cfg.teacher, "teacher")  # every model a run builds names an allowed class
        for key, low in {"score.resamples": 1, "decode.lm.beam_size": 1, "export.piece_ms": 1}.items():
            if (value := OmegaConf.select(cfg, key)) is not None and value < low:  # late stages: refused now
                raise ConfigError(f"{key} must be >= {low}, got {value}")
        self.caches: dict[str, CacheSpec] = {}
        self.systems: dict[str, System] = {}
        if is_pretrained(cfg.teacher) and cfg.tokenizer.get("_target_") != TEACHER_TOKENIZER:
            raise ConfigError("the pretrained teacher brings its own labels, which the student must share: "
                              f"add tokenizer=teacher (this config has {cfg.tokenizer.get('_target_')})")
        if not cfg.get("systems"):
            raise ConfigError("no systems configured: `systems` must name at least one student")
        nodes = _expand_seeds(cfg.systems)
        _check_decode_names(list(nodes))
        for name, node in nodes.items():
            self.systems[name] = self._resolve(name, node)
        self.target: Target | None = None  # set when a budget is (asr_kd.scoring.target)
        self.candidates: list[Candidate] = []  # every candidate, dropped ones with their reason
        if cfg.get("target") is not None:
            target = Target(**to_dict(check_types(Target, cfg.target, "target")))
            if target.active:
                self.target = target
                self.systems.update(self._candidate_systems(target, nodes))

    def _candidate_systems(self, target: Target, nodes: dict[str, DictConfig]) -> dict[str, System]:
        """The candidates of ``target`` (``Plan.candidates``), and the systems of those kept: each of
        ``target.students`` at each of ``target.chunks``, trained like ``systems.<target.like>``."""
        if target.like not in nodes:
            raise ConfigError(f"target.like: candidates are trained like a system of the run, and "
                              f"{target.like!r} is none; systems: {', '.join(nodes)}")
        like = nodes[target.like]
        base = OmegaConf.masked_copy(like, [k for k in like if k != "student"])
        frontend = to_dict(self.cfg.features.frontend)
        systems, candidates = {}, []
        for student in target.students:
            compose_option("student", student, "target.students")  # an unknown name lists the options
            for chunk in target.chunks:
                name = f"cand_{student}_c{chunk}"
                if name in nodes:
                    raise ConfigError(f"systems.{name}: the name of a target candidate; rename the system")
                node = OmegaConf.merge(base, {"student": {"from": student, "model": {
                    "chunk_frames": chunk, "dynamic_chunks": None}}})
                system = self._resolve(name, node)
                model = instantiate(system.student["model"], vocab_size=2, input_dim=frontend["num_mel_bins"])
                systems[name] = system
                candidates.append(Candidate(name, student, chunk, count_parameters(model),
                                            algorithmic_latency_ms(model, frontend, chunk),
                                            system.train["steps"] * target.step_seconds))
        self.candidates = choose_candidates(target, candidates)
        kept = [c.name for c in self.candidates if c.dropped is None]
        if not kept:
            reasons = "; ".join(f"{c.name}: {c.dropped}" for c in self.candidates)
            raise ConfigError(f"target: no candidate can meet {target.describe()} (before training: "
                              f"{reasons}); loosen the budget or widen target.students / target.chunks")
        _check_decode_names([*nodes, *kept])
        return {name: systems[name] for name in kept}

    def _resolve(self, name: str, node: DictConfig) -> System:
        where = f"systems.{name}"
        objective_node = OmegaConf.merge(*_option("distill", node.get("objective"), self.cfg.distill,
                                                  f"{where}.objective"))
        built = instantiate(objective_node, _where_=f"{where}.objective")
        objective = {"_target_": objective_node._target_,  # typed, complete but for LATER_SETTINGS unused
                     **{k: v for k, v in dataclasses.asdict(built).items()
                        if not (k in built.LATER_SETTINGS and v == built.LATER_SETTINGS[k])}}
        train = _typed_train(OmegaConf.merge(self.cfg.train.student, node.get("train") or {}),
                             f"{where}.train")
        splits = tuple(node.get("splits") or ("train",))
        cache = None
        if built.needs_teacher:
            settings = OmegaConf.merge(self.cfg.cache, node.get("cache") or {})
            cache = self._cache_for(settings, _sources(splits), where)
        option, changes = _option("student", node.get("student"), self.cfg.student, f"{where}.student")
        student = to_dict(OmegaConf.merge(option, self.cfg.get("student_overrides") or {}, changes))
        check_targets(student, f"{where}.student")
        labelled = node.get("labelled")
        if labelled is not None and not (isinstance(labelled, float | int) and 0 < labelled <= 1):
            raise ConfigError(f"{where}.labelled is the share of each split whose transcripts it sees, "
                              f"in (0, 1]; got {labelled!r}")
        return System(name, student, objective, train, splits, cache,
                      None if labelled is None else float(labelled))

    def _cache_for(self, node: DictConfig, splits: tuple[str, ...], where: str) -> str:
        values = to_dict(check_types(CacheSettings, node, f"{where}.cache"))
        if values["teachers"] not in TEACHER_RULES:
            raise ConfigError(f"{where}.cache.teachers must be one of {', '.join(TEACHER_RULES)}, "
                              f"got {values['teachers']!r}")
        if values["teachers"] != "single" and is_pretrained(self.cfg.teacher):
            raise ConfigError(f"{where}.cache.teachers={values['teachers']} trains fold teachers here, which "
                              "a pretrained teacher (teacher.adapter) cannot have; use cache.teachers=single")
        if values["k"] is not None and values["k"] < 1:
            raise ConfigError(f"{where}.cache.k must be >= 1 (at most the vocabulary size; null: the full "
                              f"distribution), got {values['k']}")
        for key in ("shard_utts", "max_frames"):
            if values[key] < 1:
                raise ConfigError(f"{where}.cache.{key} must be >= 1, got {values[key]}")
        if values["teachers"] != "single" and values["folds"] < 2:
            raise ConfigError(f"{where}.cache.folds must be >= 2 for {values['teachers']} teachers, "
                              f"got {values['folds']}")
        if values["parts"] < 1 or not (values["part"] is None or 0 <= values["part"] < values["parts"]):
            raise ConfigError(f"{where}.cache.part must be null or in 0..parts-1, and parts >= 1; got "
                              f"part={values['part']} parts={values['parts']}")
        name = cache_name(values["k"], values["teachers"], values["folds"])
        spec = CacheSpec(name=name, splits=splits, **values)
        known = self.caches.get(name)
        if known is not None:
            if known.content != spec.content:
                raise ConfigError(f"{where}: cache {name} is asked for with {spec.content} and "
                                  f"{known.content}; give systems that share a k the same cache settings")
            spec = dataclasses.replace(known, splits=tuple(dict.fromkeys(known.splits + splits)))
        self.caches[name] = spec
        return name

    # ---- units of work -------------------------------------------------------------------------

    def settings(self, unit: str) -> dict:
        """The config values unit ``unit`` depends on (plain, resolved)."""
        return self._describe(unit)[0]

    def upstream(self, unit: str) -> tuple[str, ...]:
        """The units whose outputs ``unit`` reads."""
        return self._describe(unit)[1]

    def _describe(self, unit: str) -> tuple[dict, tuple[str, ...]]:
        """``(settings, upstream)`` of ``unit``, from the method of its kind (``_<stage>_unit``: one per
        stage of the pipeline, so a new kind of unit is one method here; memoised)."""
        memo = self.__dict__.setdefault("_descriptions", {})
        if unit not in memo:
            kind, _, rest = unit.partition("/")
            if kind not in PIPELINE:
                raise KeyError(f"unknown unit {unit!r}")
            memo[unit] = getattr(self, f"_{kind}_unit")(rest)
        return memo[unit]

    def _prepare_unit(self, _: str) -> tuple[dict, tuple[str, ...]]:
        cfg = self.cfg
        return {"data": to_dict(cfg.data), "tokenizer": to_dict(cfg.tokenizer), "rate": cfg.sample_rate}, ()

    def _features_unit(self, _: str) -> tuple[dict, tuple[str, ...]]:
        return {"features": to_dict(self.cfg.features)}, ("prepare",)

    def _teacher_unit(self, fold: str) -> tuple[dict, tuple[str, ...]]:
        cfg = self.cfg
        if fold:  # a cross-fitting teacher (teacher/fold<i>of<K>): the teacher's recipe, its own seed
            index, folds = self.fold_units[f"teacher/{fold}"]
            train = _learned(self.teacher_train)
            settings = {"model": to_dict(cfg.teacher.model), "fold": index, "folds": folds,
                        "train": {**train, "seed": train["seed"] + index}}
        elif is_pretrained(cfg.teacher):  # the model is its architecture and its weights, wherever they lie
            adapter = {k: v for k, v in to_dict(cfg.teacher.adapter).items() if k != "checkpoint"}
            settings = {"adapter": adapter, "checkpoint_sha": self.teacher_checkpoint_sha}
        elif cfg.teacher.checkpoint:
            settings = {"checkpoint_sha": self.teacher_checkpoint_sha}
        else:
            settings = {"teacher": to_dict(cfg.teacher), "train": _learned(self.teacher_train)}
        return settings, ("features",)

    def _cache_unit(self, rest: str) -> tuple[dict, tuple[str, ...]]:
        name, split = rest.split("/")
        return {**self.caches[name].content, "split": split}, (*self.caches[name].members, "features")

    def _student_unit(self, name: str) -> tuple[dict, tuple[str, ...]]:
        system = self.systems[name]
        caches = [f"cache/{system.cache}/{split}" for split in system.sources] if system.cache else []
        return {**system.config, "train": _learned(system.train)}, ("features", *caches)

    def _decode_unit(self, name: str) -> tuple[dict, tuple[str, ...]]:
        cfg = self.cfg
        settings = {"decode": to_dict(cfg.decode), "test_sets": list(cfg.test_sets), "dev_set": cfg.dev_set,
                    "symbol_delays": 2}  # what a decode writes: decodes made before delays existed are redone
        if name == "teacher":
            return settings, ("teacher", "features")
        # a student's symbol delay is measured against the teacher decode's forced alignments
        return settings, (f"student/{name}", "features", "decode/teacher")

    def _export_unit(self, name: str) -> tuple[dict, tuple[str, ...]]:
        cfg = self.cfg
        settings = {**{k: v for k, v in to_dict(cfg.export).items() if k != "systems"},
                    "test_sets": list(cfg.test_sets), "format": EXPORT_FORMAT}
        if name in self.systems:  # trained here: student/<system> stands for the weights
            return settings, (f"student/{name}", "prepare")
        checkpoint = ExpPaths(Path(cfg.exp_dir).absolute()).checkpoint(name)  # copied in
        if not checkpoint.exists():
            raise MissingFileError(f"{checkpoint}: no model {name!r} to export; train it first (`asr-kd "
                                   f"stage=student exp_dir={cfg.exp_dir}`) or set export.systems")
        return {**settings, "model_sha": file_hash(checkpoint)}, ()

    def _score_unit(self, _: str) -> tuple[dict, tuple[str, ...]]:
        settings = {"test_sets": list(self.cfg.test_sets), "score": to_dict(self.cfg.get("score"))}
        if self.target is not None:  # target.json is part of the score (absent: fingerprint as before)
            settings["target"] = to_dict(self.cfg.target)
        return settings, (*(f"decode/{name}" for name in self.decoded),
                          *(f"export/{name}" for name in self.exported))

    def fingerprint(self, unit: str) -> str:
        """Hash of the unit's settings and its upstream units' fingerprints (memoised)."""
        memo = self.__dict__.setdefault("_fingerprints", {})
        if unit not in memo:
            parents = {up: self.fingerprint(up) for up in self.upstream(unit)}
            memo[unit] = fingerprint({"settings": self.settings(unit), "upstream": parents})
        return memo[unit]

    @property
    def decoded(self) -> list[str]:
        """Every model the decode and score stages cover: the teacher, then each system."""
        return ["teacher", *self.systems]

    @property
    def export_names(self) -> list[str]:
        """``export.systems``, checked: a list of names; with a target, the kept candidates after them
        (their measured size, latency and RTF decide the winner)."""
        names = self.cfg.get("export", {}).get("systems") or []
        if isinstance(names, str) or not all(isinstance(n, str) for n in names):
            raise ConfigError(f"export.systems must be a list of system names, e.g. [student_kd], "
                              f"not {names!r}")
        kept = [c.name for c in self.candidates if c.dropped is None]
        return list(dict.fromkeys([*names, *kept]))

    @cached_property
    def exported(self) -> list[str]:
        """The systems of ``export.systems`` that the pipeline exports and the report covers (as
        ``<system>_sherpa`` and ``<system>_sherpa_int8``, or ``_onnx`` and ``_int8`` for the Emformer):
        those of this plan whose student streams."""
        return [n for n in self.export_names if n in self.systems and self.streams(n)]

    def streams(self, name: str) -> bool:
        """Whether system ``name``'s student is a streaming model (built, untrained, to ask it)."""
        model = instantiate(self.systems[name].student["model"], vocab_size=2)
        return bool(getattr(model, "streaming", False))

    @property
    def baselines(self) -> list[str]:
        """The systems every other student is compared with in the report: ``score.baselines``, or
        by default every system whose objective reads no teacher (CTC on the transcripts)."""
        named = self.cfg.get("score", {}).get("baselines")
        if named is not None:
            unknown = sorted(set(named) - set(self.systems))
            if unknown:
                raise ConfigError(f"score.baselines names no system {unknown}; systems: {list(self.systems)}")
            return list(named)
        return [n for n, s in self.systems.items() if s.cache is None]  # no cache: reads no teacher

    @cached_property
    def fold_units(self) -> dict[str, tuple[int, int]]:
        """The cross-fitting teachers the caches need: unit -> (fold, folds)."""
        units = {unit: (i, spec.folds) for spec in self.caches.values()
                 for i, unit in enumerate((u for u in spec.members if u != "teacher"), 1)}
        return dict(sorted(units.items()))

    def cache_subsampling(self, spec: CacheSpec, input_dim: int) -> int:
        """The subsampling of the students that read cache ``spec`` (they must share one frame rate)."""
        factors = {name: instantiate(s.student["model"], vocab_size=2, input_dim=input_dim).subsampling_factor
                   for name, s in self.systems.items() if s.cache == spec.name}
        if len(set(factors.values())) > 1:
            raise ConfigError(f"cache {spec.name}: its students subsample by {factors}; systems that share a "
                              "cache must share a frame rate")
        return next(iter(factors.values()))

    def cache_units(self) -> list[str]:
        return [f"cache/{name}/{split}" for name, spec in self.caches.items() for split in spec.splits]

    @cached_property
    def teacher_checkpoint_sha(self) -> str:
        path = self.cfg.teacher.checkpoint
        if not path:
            raise ConfigError("teacher.checkpoint is not set: a pretrained teacher needs its local weights")
        try:
            return path_hash(path)
        except OSError as e:
            raise ConfigError(f"teacher.checkpoint={path}: cannot read it ({e.strerror})") from None
