"""Hydra glue kept at the edge: the one ``instantiate`` every config-built object goes through."""

from __future__ import annotations

from typing import Any

import hydra.utils
from omegaconf import DictConfig, OmegaConf

__all__ = ["instantiate", "to_dict"]

#: Modules whose callables configs may name in ``_target_`` (Hydra 1.4 will ask for such a list).
ALLOWED_PREFIXES = ("asr_kd.",)


def to_dict(cfg: Any) -> Any:
    """A plain, resolved ``dict`` of a config node (or the value itself)."""
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


def instantiate(config: dict | DictConfig, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` restricted to targets inside ``asr_kd``; ``kwargs`` are run-time facts."""
    target = config.get("_target_", "")
    if not target.startswith(ALLOWED_PREFIXES):
        raise ValueError(f"_target_ {target!r} is outside the allowed modules {ALLOWED_PREFIXES}")
    return hydra.utils.instantiate(config, **kwargs)
