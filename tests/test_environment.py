"""The installed environment is the locked one and every native dependency loads: drift (a new
torchaudio beside the old torch, a missing libsndfile...) fails here by name, not inside a stage."""

import subprocess
import sys
from pathlib import Path

import pytest

from asr_kd import environment
from asr_kd.environment import CHECKS, check_lock, diagnose, locked_versions

LOCK = Path(__file__).resolve().parent.parent / "requirements.lock"


def test_torch_and_torchaudio_are_the_locked_pair():
    pins = locked_versions(LOCK)
    import torch
    import torchaudio

    for name, module in (("torch", torch), ("torchaudio", torchaudio)):
        assert module.__version__.split("+")[0] == pins[name], (
            f"{name} {module.__version__} is installed, the lock says {pins[name]}: run `make setup`"
        )


@pytest.mark.parametrize("name", list(CHECKS))
def test_native_dependency_loads(name):
    CHECKS[name]()  # raises RuntimeError with a one-line message naming the package and the fix


def test_every_locked_package_is_installed_at_its_version():
    assert check_lock(LOCK) == []


def test_pip_check_passes():
    assert diagnose(pip=True) == []


def test_a_mismatched_pair_is_named_with_the_fix(monkeypatch):
    versions = {"torch": "2.11.0+cu130", "torchaudio": "2.11.1"}
    monkeypatch.setattr(environment, "_version", versions.get)
    with pytest.raises(RuntimeError, match=r"torchaudio 2\.11\.1 with torch 2\.11\.0\+cu130: not a matching"):
        environment.check_torch_pair()
    monkeypatch.setattr(environment, "_version", {**versions, "torchaudio": "2.11.0"}.get)
    environment.check_torch_pair()  # 2.11.0 and 2.11.0+cu130 are one release


def test_lock_drift_is_reported_per_package(tmp_path, monkeypatch):
    lock = tmp_path / "requirements.lock"
    lock.write_text("torch==2.11.0 \\\n    --hash=sha256:00\nnumpy==0.0.1\n")
    problems = check_lock(lock)
    assert len(problems) == 1 and problems[0].startswith("numpy: ") and "the lock" in problems[0]


def test_cli_reports_a_broken_dependency_in_one_line(tmp_path):
    """A dependency that fails to load at run time: one line naming it, exit 3, no traceback."""
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text(
        "import sys\n"
        "class _Broken:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'soundfile':\n"
        "            raise OSError('cannot load library libsndfile.so: simulated')\n"
        "sys.meta_path.insert(0, _Broken())\n"
    )
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "asr_kd.cli", "stage=prepare", f"exp_dir={tmp_path / 'e'}"],
                          capture_output=True, text=True, env=env)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert lines == [lines[-1]] and lines[-1].startswith("asr-kd: error: broken installation: soundfile")
