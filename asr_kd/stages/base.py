"""What every stage shares: its paths, its fingerprint, skip-if-done and the done stamp.

A stage's fingerprint hashes its own settings and the fingerprints of the stamps it reads, so
changing an upstream setting changes every downstream fingerprint and re-runs those stages.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from omegaconf import DictConfig

from asr_kd.config import to_dict
from asr_kd.paths import ExpPaths
from asr_kd.utils import fingerprint, read_json, write_json

__all__ = ["exp_paths", "StageStamp", "MissingUpstreamError"]

log = logging.getLogger(__name__)


class MissingUpstreamError(RuntimeError):
    """A stage's input has not been produced yet."""


def exp_paths(cfg: DictConfig) -> ExpPaths:
    return ExpPaths(Path(cfg.exp_dir).absolute())


class StageStamp:
    """The fingerprint of one unit of work (a stage, or one system inside a stage).

    ``settings`` are this unit's own config values; ``upstream`` names the stamps it consumes.
    """

    def __init__(self, cfg: DictConfig, name: str, settings: object, upstream: tuple[str, ...] = ()):
        self.paths = exp_paths(cfg)
        self.name = name
        self.force = bool(cfg.force)
        parents = {up: self._upstream_fingerprint(up) for up in upstream}
        self.fingerprint = fingerprint({"settings": to_dict(settings), "upstream": parents})

    def _upstream_fingerprint(self, up: str) -> str:
        path = self.paths.stamp(up)
        if not path.exists():
            raise MissingUpstreamError(
                f"{self.name} needs the output of '{up}', which has not run in {self.paths.root}; "
                f"run `asr-kd stage={up.split('/')[0]} exp_dir={self.paths.root}` first"
            )
        return read_json(path)["fingerprint"]

    def is_done(self) -> bool:
        """True when finished outputs exist for exactly these settings and inputs (and no force)."""
        path = self.paths.stamp(self.name)
        if self.force or not path.exists():
            return False
        if read_json(path)["fingerprint"] != self.fingerprint:
            log.info("%s: settings or inputs changed since the last run; redoing it", self.name)
            return False
        log.info(
            "%s: up to date (fingerprint %s), skipped; force=true redoes it", self.name, self.fingerprint
        )
        return True

    def done(self, info: dict | None = None) -> None:
        write_json(
            self.paths.stamp(self.name),
            {
                "fingerprint": self.fingerprint,
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "info": info or {},
            },
        )

    def info(self) -> dict:
        return read_json(self.paths.stamp(self.name)).get("info", {})
