"""Checksums of artefacts (asr_kd.integrity): sidecars in sha256sum format, and a unit whose bundle
changed after it was written is refused wherever it is found up to date or read as an input."""

import hashlib
import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from asr_kd.errors import ChecksumError
from asr_kd.integrity import checksum_path, checksummed
from asr_kd.paths import ExpPaths
from asr_kd.stages.base import StageStamp
from asr_kd.stages.plan import Plan

CONF = str(Path(__file__).resolve().parent.parent / "conf")


def test_sidecar_is_sha256sum_format(tmp_path):
    with checksummed(tmp_path / "model.pt") as tmp:
        tmp.write_bytes(b"weights")
    digest = hashlib.sha256(b"weights").hexdigest()
    assert checksum_path(tmp_path / "model.pt").read_text() == f"{digest}  model.pt\n"


def test_a_changed_teacher_bundle_is_refused_not_cached_from(tmp_path):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("config", overrides=[f"exp_dir={tmp_path}"])
    for unit in ("prepare", "features"):
        StageStamp(cfg, unit).done()
    teacher = ExpPaths(tmp_path).checkpoint("teacher")
    with checksummed(teacher) as tmp:
        tmp.write_bytes(bytes(range(256)) * 64)
    StageStamp(cfg, "teacher").done()
    cache = Plan(cfg).cache_units()[0]
    StageStamp(cfg, cache)  # its input is intact
    data = bytearray(teacher.read_bytes())
    data[1000] ^= 0xFF  # one flipped byte
    teacher.write_bytes(bytes(data))
    os.utime(teacher, ns=(1, 1))
    with pytest.raises(ChecksumError, match=r"teacher/model.pt: checksum mismatch .*stage=teacher force"):
        StageStamp(cfg, cache)  # the cache stage never reads it, even when the cache is up to date
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        StageStamp(cfg, "teacher").is_done()  # stage=all does not call it up to date either
    cfg.force = True
    assert not StageStamp(cfg, "teacher").is_done()  # force=true remakes it
