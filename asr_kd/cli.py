"""``asr-kd``: the command line. ``asr-kd stage=NAME [overrides...]`` (see README).

Hydra stays here: this module composes the config, checks it, sets up logging and calls the stage.
User errors (bad input, bad settings, a stage run out of order: asr_kd.errors.UserError) and a
broken installation print one line and exit non-zero; ``HYDRA_FULL_ERROR=1`` shows the traceback.
"""

from __future__ import annotations

import errno
import importlib
import logging
import os
import sys
from contextlib import nullcontext
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict

from asr_kd.config import CONF_DIR
from asr_kd.environment import diagnose
from asr_kd.errors import UserError
from asr_kd.lock import exp_dir_lock
from asr_kd.paths import ExpPaths
from asr_kd.stages import PIPELINE, STAGES, get_stage, run_all

#: Hydra flags that take no value: they may come after the overrides on our command line.
_BARE_FLAGS = ("-m", "--multirun", "-r", "--run", "--resolve", "--hydra-help", "--version")

#: ``stage=transcribe`` writes nothing unless asked: no run folder, no ``.hydra``, logs on stderr only.
_WRITE_NOTHING = ("hydra.run.dir=.", "hydra.output_subdir=null", "~hydra.job_logging.handlers.file",
                  "hydra.job_logging.root.handlers=[console]",
                  "hydra.job_logging.handlers.console.stream=ext://sys.stderr")

#: Stages that only read exp_dir: they run beside others (the rest hold exp_dir's lock, asr_kd.lock).
_READ_ONLY = ("transcribe", "compare")

log = logging.getLogger("asr_kd")


def _full_errors() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def _sweep_job_dir(cfg: DictConfig) -> None:
    """In a ``--multirun`` sweep whose exp_dir is the same for every job, give each job its own
    ``<exp_dir>/jobs/<overrides>`` seeded with the shared upstream (so jobs never overwrite each
    other's models or report). ``stage=cache`` jobs keep the shared exp_dir (each writes its own
    shards, ``cache.part``, or its own cache), and so does a job no override names (one job sent to a
    cluster launcher: ``hydra/launcher=slurm``)."""
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN or cfg.stage == "cache" or not hydra_cfg.job.override_dirname:
        return
    given = [o.split("=", 1)[1] for o in hydra_cfg.overrides.task if o.startswith("exp_dir=")]
    if given and "${" in given[0]:
        return  # the user made it per job
    from asr_kd.stages.base import share_upstream

    base = Path(cfg.exp_dir)
    job = base / "jobs" / hydra_cfg.job.override_dirname
    share_upstream(ExpPaths(base.absolute()), ExpPaths(job.absolute()))
    cfg.exp_dir = str(job)
    log.info("sweep job %d: exp_dir=%s", hydra_cfg.job.num, job)


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def _main(cfg: DictConfig) -> None:
    try:
        stage = get_stage(cfg.stage)
        _sweep_job_dir(cfg)
        with open_dict(cfg):  # the command line's overrides, for the report's provenance
            cfg.overrides = list(HydraConfig.get().overrides.task)
        part = cfg.stage == "cache" and cfg.cache.get("part") is not None  # beside its other parts
        with nullcontext() if cfg.stage in _READ_ONLY else exp_dir_lock(Path(cfg.exp_dir).absolute(), part):
            if cfg.stage in (*PIPELINE, "all", "check"):
                from asr_kd.stages.plan import Plan

                Plan(cfg)  # every system, objective and training setting checked before any work
            stage(cfg)
    except UserError as e:
        if _full_errors():
            raise
        print(f"asr-kd: error: {e}", file=sys.stderr)
        sys.exit(2)
    except (ImportError, OSError) as e:
        if isinstance(e, OSError) and e.errno == errno.ENOSPC and not _full_errors():
            where = e.filename or Path(cfg.exp_dir).absolute()
            print(f"asr-kd: error: no space left on device writing {where}; free some space and re-run "
                  "(finished work is kept)", file=sys.stderr)
            sys.exit(2)
        problems = diagnose()
        if not problems or _full_errors():
            raise
        print(f"asr-kd: error: broken installation: {problems[0]}", file=sys.stderr)
        sys.exit(3)


def stages_help() -> str:
    """Usage and one line per stage (the opening sentence of its module docstring)."""
    lines = ["usage: asr-kd stage=NAME [recipe=NAME] [study=NAME] [exp_dir=PATH] [--multirun] "
             "[group=option ...] [key=value ...]", "", "Stages (stage=all runs the pipeline in order):"]
    for name in STAGES:
        doc = run_all.__doc__ if name == "all" else importlib.import_module(f"asr_kd.stages.{name}").__doc__
        summary = " ".join((doc or "").split("\n\n")[0].split())
        summary = summary.split(": ", 1)[-1] if summary.startswith("Stage ") else summary
        summary = summary.split(". ")[0].rstrip(".").replace("``", "")
        lines.append(f"  {name:<11}{summary[0].lower()}{summary[1:]}")
    return "\n".join(lines)


def main() -> None:
    """Console-script entry point."""
    args = sys.argv[1:]
    if args in (["-h"], ["--help"]):
        print(stages_help() + "\n")
        args = ["--help"]  # then Hydra's help: every config group and its options (conf/config.yaml)
    # Hydra's parser takes its flags only before the overrides; README lines put --multirun after.
    flags = [a for a in args if a in _BARE_FLAGS]
    overrides = [a for a in args if a not in _BARE_FLAGS]
    if "stage=transcribe" in overrides:
        given = {a.split("=", 1)[0].lstrip("~+") for a in overrides}
        overrides += [o for o in _WRITE_NOTHING if o.split("=", 1)[0].lstrip("~") not in given]
    sys.argv = [sys.argv[0], *flags, *overrides]
    _main()


if __name__ == "__main__":
    main()
