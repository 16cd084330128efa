"""``asr-kd``: the command line. ``asr-kd stage=NAME [overrides...]`` (see README).

Hydra stays here: this module composes the config, sets up logging and calls the stage.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from asr_kd.stages import STAGES, get_stage

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")

log = logging.getLogger("asr_kd")


@hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")
def _main(cfg: DictConfig) -> None:
    try:
        stage = get_stage(cfg.stage)
    except ValueError as e:
        log.error("%s", e)
        sys.exit(2)
    with open_dict(cfg):  # the command line's overrides, for the report's provenance
        cfg.overrides = list(HydraConfig.get().overrides.task)
    stage(cfg)


def main() -> None:
    """Console-script entry point."""
    if any(a in ("-h", "--help") for a in sys.argv[1:]) and len(sys.argv) == 2:
        print(f"usage: asr-kd stage={{{','.join(STAGES)}}} [recipe=NAME] [exp_dir=PATH] [key=value ...]")
    _main()


if __name__ == "__main__":
    main()
