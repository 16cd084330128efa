"""Pipeline stages. Each module has one entry ``run(cfg)`` and a docstring saying what it reads,
what it writes and how to run it; stages talk only through files in ``exp_dir`` (asr_kd.paths).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable

from omegaconf import DictConfig

from asr_kd.errors import ConfigError

__all__ = ["STAGES", "PIPELINE", "TOOLS", "get_stage"]

log = logging.getLogger(__name__)

#: The stages of ``stage=all``, in order.
#: ``export``: ONNX graphs of the streaming systems of ``export.systems`` (for sherpa-onnx and
#: asr-kd-onnx) and their decodes, which the report lists as ``<system>_sherpa`` /
#: ``<system>_sherpa_int8`` (``<system>_onnx`` / ``<system>_int8`` for the Emformer).
PIPELINE = ("prepare", "features", "teacher", "cache", "student", "decode", "export", "score")
#: Stages outside the pipeline, run on their own (``check``: the pre-flight check, which ``all`` also
#: runs first; ``transcribe``: one audio file with a trained model; ``compare``: several experiments'
#: reports as mean ± sd).
TOOLS = ("check", "transcribe", "compare")
#: Every valid ``stage=`` name.
STAGES = (*PIPELINE, "all", *TOOLS)


def get_stage(name: str) -> Callable[[DictConfig], object]:
    """The ``run`` function of stage ``name``; an unknown name lists the valid ones."""
    if name not in STAGES:
        raise ConfigError(f"unknown stage {name!r}; valid stages: {', '.join(STAGES)}")
    if name == "all":
        return run_all
    return importlib.import_module(f"asr_kd.stages.{name}").run


def run_all(cfg: DictConfig) -> None:
    """Every stage in order, after the pre-flight check; each skips itself when its outputs are up to
    date. The check only advises: whatever it finds, and if it fails, the run goes on."""
    try:
        get_stage("check")(cfg)
    except Exception as e:  # noqa: BLE001 - a failed check is one line, never a stopped run
        log.warning("pre-flight check failed (%s: %s); the run goes on", type(e).__name__, e)
    for name in PIPELINE:
        get_stage(name)(cfg)
