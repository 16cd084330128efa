"""One run per exp_dir: a second run fails at start naming the holder; the lock dies with its holder."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from asr_kd.lock import LOCK_NAME, ExpDirBusyError, exp_dir_lock

HOLD = "import sys, time; from pathlib import Path; from asr_kd.lock import exp_dir_lock\n" \
       "with exp_dir_lock(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(60)"


@pytest.fixture
def holder(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    yield proc
    proc.kill()
    proc.wait()


def test_a_second_run_is_refused_naming_the_holder_until_it_dies(tmp_path, holder):
    with pytest.raises(ExpDirBusyError, match=f"in use by another run \\(pid {holder.pid} on "), \
            exp_dir_lock(tmp_path):
        pass
    os.kill(holder.pid, signal.SIGKILL)  # no chance to clean up: the lock file stays, its lock does not
    holder.wait()
    with exp_dir_lock(tmp_path):
        assert f'"pid": {os.getpid()}' in (tmp_path / LOCK_NAME).read_text()


def test_the_cli_refuses_a_busy_exp_dir_in_one_line(tmp_path, holder):
    env = {**os.environ}
    env.pop("HYDRA_FULL_ERROR", None)
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "asr_kd.cli", "stage=all", "recipe=smoke", f"exp_dir={tmp_path}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert f"asr-kd: error: {tmp_path} is in use by another run (pid {holder.pid} on" in proc.stderr
    assert f"started {time.strftime('%Y')}" in proc.stderr and f"-c {tmp_path}" in proc.stderr  # its command
    assert not (tmp_path / "data").exists() and time.perf_counter() - start < 30


def test_a_lock_file_left_behind_is_taken_over(tmp_path):
    (tmp_path / LOCK_NAME).write_text('{"pid": 1, "host": "gone", "command": "x", "started": "then"}\n')
    with exp_dir_lock(Path(tmp_path)):
        assert '"host": "gone"' not in (tmp_path / LOCK_NAME).read_text()


def test_the_parts_of_a_cache_share_the_lock_and_exclude_a_whole_run(tmp_path, holder):
    with pytest.raises(ExpDirBusyError, match=f"pid {holder.pid}"), exp_dir_lock(tmp_path, shared=True):
        pass  # a part does not start beside a run that holds the directory
    holder.kill()
    holder.wait()
    with exp_dir_lock(tmp_path, shared=True), exp_dir_lock(tmp_path, shared=True), \
            pytest.raises(ExpDirBusyError, match="the parts of a cache"), exp_dir_lock(tmp_path):
        pass  # two parts hold it at once; a whole run cannot
