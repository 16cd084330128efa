"""Hydra glue kept at the edge: the one ``instantiate`` every config-built object goes through, and
the type check of config nodes against the dataclasses that describe them."""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
from pathlib import Path
from typing import Any

import hydra.utils
from hydra.errors import InstantiationException, MissingConfigException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from asr_kd.errors import ConfigError, UserError

__all__ = ["CONF_DIR", "instantiate", "to_dict", "check_types", "check_targets", "compose_option"]

#: The config groups (conf/): ``asr-kd`` composes them, :func:`compose_option` reads one option.
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"

#: Every callable a config may name in ``_target_``, at any depth, by where it is defined (Hydra 1.4
#: will ask for such a list): models, objectives, front ends, importers, tokenizers. Add new ones here.
ALLOWED_TARGETS = frozenset({
    "asr_kd.models.teacher.ConformerCTC", "asr_kd.models.student.EmformerCTC",
    "asr_kd.models.conformer_stream.ChunkConformerCTC", "asr_kd.models.torchaudio_ctc.TorchaudioCTC",
    "asr_kd.models.torchaudio_ctc.bundle_labels", "asr_kd.models.hf_ctc.HFCTC",
    "asr_kd.models.hf_ctc.model_labels", "asr_kd.models.adapters.teacher_tokenizer",
    "asr_kd.distill.objectives.CTCOnly", "asr_kd.distill.objectives.FrameKD",
    "asr_kd.distill.objectives.GuidedCTC",
    "asr_kd.features.frontend.KaldiFbank", "asr_kd.features.frontend.LibrosaLogMel",
    "asr_kd.data.tokenizer.CharTokenizer.from_texts", "asr_kd.data.bpe.BpeTokenizer.train",
    "asr_kd.data.synthetic.make_synthetic_corpus", "asr_kd.data.importers.fsdd.import_fsdd",
    "asr_kd.data.importers.kaldi.import_kaldi", "asr_kd.data.importers.lhotse_io.import_lhotse",
    "asr_kd.data.importers.librispeech.import_librispeech", "asr_kd.data.importers.ljspeech.import_ljspeech",
    "asr_kd.data.importers.manifest.import_manifest",
})


def to_dict(cfg: Any) -> Any:
    """A plain, resolved ``dict`` (or list) of a config node (or the value itself)."""
    return OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else cfg


def check_types(schema: type, node: Any, where: str) -> DictConfig:
    """``node`` merged onto the dataclass ``schema``: a wrong type, an unknown key, a missing value or
    one its ``__post_init__`` refuses raises :class:`ConfigError` naming the key or node
    (``train.student.steps: 'abc' is not an int``, ``train.student: train steps must be >= 1``)."""
    try:
        typed = OmegaConf.merge(OmegaConf.structured(schema), node)
        OmegaConf.to_object(typed)  # raises on values still missing
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", "") or ""
        message = str(e).splitlines()[0]
        raise ConfigError(f"{where}{'.' + key if key else ''}: {message}") from None
    except ConfigError as e:  # a value the schema's __post_init__ refuses
        raise ConfigError(f"{where}: {e}") from None
    return typed


@functools.cache
def _composed_option(group: str, option: str) -> dict:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():  # inside asr-kd (or a test's Compose API context)
        return to_dict(compose(config_name=f"{group}/{option}")[group])
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return to_dict(compose(config_name=f"{group}/{option}")[group])


def compose_option(group: str, option: str, where: str) -> DictConfig:
    """Option ``option`` of config group ``group`` as Hydra composes it (``conf/<group>/<option>.yaml``
    with its own defaults list), for configs that name an option by its name (a system's
    ``student: conformer_full_small``). An unknown name lists the group's options."""
    try:
        return OmegaConf.create(_composed_option(group, option))
    except MissingConfigException:
        options = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
        raise ConfigError(f"{where}: {group} has no option {option!r}; "
                          f"options: {', '.join(options)}") from None


def _locate(target: str, where: str) -> Any:
    """The object ``target`` names (``module.function``, ``module.Class.method``...)."""
    parts = target.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for name in parts[split:]:
            if not hasattr(obj, name):
                raise ConfigError(f"{where or 'config'}: _target_ {target!r} does not exist (no {name!r} in "
                                  f"{'.'.join(parts[:parts.index(name)])})")
            obj = getattr(obj, name)
        return obj
    raise ConfigError(f"{where or 'config'}: _target_ {target!r} does not exist (no module {parts[0]!r})")


def _targets(node: Any) -> list[Any]:
    """Every ``_target_`` value in a config tree (dicts and lists, at any depth)."""
    node = to_dict(node)
    if isinstance(node, dict):
        own = [node["_target_"]] if "_target_" in node else []
        return own + [t for value in node.values() for t in _targets(value)]
    if isinstance(node, (list, tuple)):
        return [t for value in node for t in _targets(value)]
    return []


def _check_target(target: Any, where: str) -> None:
    """Refuse a ``_target_`` not in :data:`ALLOWED_TARGETS`, or one that resolves to an object defined
    elsewhere (a re-export such as ``asr_kd.utils.os.system``)."""
    if isinstance(target, str) and target.startswith("asr_kd."):
        obj = _locate(target, where)  # a misspelt name says "does not exist"
        if target in ALLOWED_TARGETS and f"{obj.__module__}.{obj.__qualname__}" == target:
            return
    raise ConfigError(f"{where or 'config'}: _target_ {target!r} is outside the allowed modules "
                      "(asr_kd.config.ALLOWED_TARGETS: model, objective, front end, importer and tokenizer "
                      "classes)")


def check_targets(node: Any, where: str) -> None:
    """Refuse a config tree in which any ``_target_`` is not allowed (:func:`_check_target`), before
    anything is built: a plan checks every model of a run at start."""
    for target in _targets(node):
        _check_target(target, where)


def _check_keys(obj: Any, keys: set[str], where: str) -> None:
    """Refuse keys that ``obj`` does not take (e.g. a recipe's settings for another option of a group)."""
    params = inspect.signature(obj).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(keys - set(params))
    if unknown:
        raise ConfigError(f"{where}: {obj.__qualname__} takes no {unknown} (it takes {sorted(params)}); a "
                          f"recipe made for another option? drop them, e.g. ~{where}.{unknown[0]}")


def instantiate(config: dict | DictConfig, _where_: str = "", **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` restricted to :data:`ALLOWED_TARGETS` at every depth; ``kwargs`` are
    run-time facts.

    A target that is a dataclass has its arguments type-checked first (:func:`check_types`), so a
    wrong type fails at start with the key's name, not deep inside training.
    """
    target = config.get("_target_")
    _check_target(target, _where_)
    check_targets([config, kwargs], _where_)
    obj = _locate(target, _where_)
    args = {k: v for k, v in to_dict(config).items() if not k.startswith("_")}
    if dataclasses.is_dataclass(obj):
        check_types(obj, {**args, **kwargs}, _where_ or target)
    else:
        _check_keys(obj, {*args, *(k for k in kwargs if not k.startswith("_"))}, _where_ or target)
    try:
        return hydra.utils.instantiate(config, **kwargs)
    except InstantiationException as e:  # Hydra wraps what the target raised
        if isinstance(e.__cause__, ConfigError) and _where_:
            raise ConfigError(f"{_where_}: {e.__cause__}") from None
        if isinstance(e.__cause__, UserError):
            raise e.__cause__ from None
        raise
