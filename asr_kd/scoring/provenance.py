"""Provenance of a report: which code, settings and machine produced it (keys: asr_kd.scoring.report).

Nothing here fails a report: facts that cannot be found (no git, no /proc/cpuinfo) are ``None``.
"""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import torch
import torchaudio
from omegaconf import DictConfig

from asr_kd.config import to_dict
from asr_kd.utils import read_json

__all__ = ["git_state", "cpu_model", "stage_wall_times", "corpus_sha", "provenance"]

_PACKAGE_DIR = Path(__file__).resolve().parent.parent


def _git(folder: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def git_state(folder: Path = _PACKAGE_DIR) -> tuple[str | None, bool | None]:
    """``(commit, dirty)`` of the git checkout that holds the package's own files (``None, None``
    when the package is not tracked by git, e.g. installed as a wheel); dirty: tracked files changed."""
    if _git(folder, "ls-files", "--error-unmatch", "__init__.py") is None:
        return None, None
    commit = _git(folder, "rev-parse", "HEAD")
    status = _git(folder, "status", "--porcelain", "--untracked-files=no")
    return (commit.strip() if commit else None), (None if status is None else bool(status.strip()))


def cpu_model() -> str | None:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what ``platform`` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def stage_wall_times(stamps_dir: Path) -> dict[str, float | None]:
    """``{stage: wall seconds}`` from the stamps (``stamps/<stage>.json``, key ``wall_s``; ``None``
    for a stamp that does not record it). Nested stamps are named by path: ``student/student_kd``."""
    if not stamps_dir.is_dir():
        return {}
    return {
        path.relative_to(stamps_dir).with_suffix("").as_posix(): read_json(path).get("wall_s")
        for path in sorted(stamps_dir.rglob("*.json"))
    }


def corpus_sha(stamps_dir: Path) -> str | None:
    """The corpus hash that stage prepare recorded (``stamps/prepare.json``); ``None`` if none."""
    stamp = stamps_dir / "prepare.json"
    return read_json(stamp).get("info", {}).get("corpus_sha") if stamp.exists() else None


def provenance(cfg: DictConfig, stamps_dir: Path) -> dict:
    """The ``provenance`` block of report.json. ``cfg.overrides`` is set by the command line (asr_kd.cli)."""
    commit, dirty = git_state()
    return {
        "commit": commit,
        "dirty": dirty,
        "overrides": list(cfg.get("overrides") or []),
        "config": to_dict(cfg),
        "torch": torch.__version__,
        "torchaudio": torchaudio.__version__,
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "threads": torch.get_num_threads(),
        "stage_wall_s": stage_wall_times(stamps_dir),
        "corpus_sha": corpus_sha(stamps_dir),
    }
