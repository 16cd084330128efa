"""Every config option composes, and every ``_target_`` in it names a real callable in asr_kd."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.utils import _locate
from omegaconf import OmegaConf

from asr_kd.config import instantiate

CONF = Path(__file__).resolve().parent.parent / "conf"
GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir())
OPTIONS = [(g, y.stem) for g in GROUPS for y in sorted((CONF / g).glob("*.yaml"))]


def _targets(node):
    if isinstance(node, dict):
        if "_target_" in node:
            yield node["_target_"]
        for v in node.values():
            yield from _targets(v)


@pytest.mark.parametrize("group,option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_option_composes_and_targets_resolve(group, option):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"{group}={option}"])
    container = OmegaConf.to_container(cfg, resolve=False)
    for target in _targets(container):
        assert target.startswith("asr_kd."), target
        assert callable(_locate(target))


def test_features_options_instantiate():
    for option in ("fbank", "librosa"):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("config", overrides=[f"features={option}"])
        frontend = instantiate(cfg.features.frontend, sample_rate=16000)
        assert frontend.num_frames(16000) == 98


def test_unknown_keys_are_refused():
    from hydra.errors import ConfigCompositionException

    with (
        initialize_config_dir(config_dir=str(CONF), version_base="1.3"),
        pytest.raises(ConfigCompositionException),
    ):
        compose("config", overrides=["distill.temprature=2"])


def test_instantiate_refuses_targets_outside_the_package():
    with pytest.raises(ValueError, match="outside the allowed modules"):
        instantiate({"_target_": "os.system", "command": "true"})
