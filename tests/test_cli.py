"""The command line turns what a user can act on into one line: a full disk (torch's writes
included), a recipe's settings that the chosen data option does not take."""

import shutil
import sys

import pytest
import torch

import asr_kd.stages.score
from asr_kd import cli
from asr_kd.utils import atomic_path


def test_a_full_disk_is_one_line_naming_the_file(tmp_path, monkeypatch, capsys):
    target = tmp_path / "exp" / "report.json"

    def fill_the_disk(cfg):  # a stage's write that hits ENOSPC (/dev/full), which names no file
        with atomic_path(target), open("/dev/full", "w") as f:
            f.write("x" * 100_000)

    monkeypatch.setattr(asr_kd.stages.score, "run", fill_the_disk)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.setattr(sys, "argv", ["asr-kd", "stage=score", f"exp_dir={tmp_path / 'exp'}"])
    with pytest.raises(SystemExit) as e:
        cli.main()
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and err == [f"asr-kd: error: no space left on device writing {target}; free "
                                         "some space and re-run (finished work is kept)"]


def test_a_recipe_for_another_data_option_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    files = f"data.files={{train:{tmp_path / 'train.csv'}}}"
    monkeypatch.setattr(sys, "argv", ["asr-kd", "stage=prepare", "recipe=smoke", "data=manifest", files,
                                      f"exp_dir={tmp_path}"])
    with pytest.raises(SystemExit) as e:
        cli.main()
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1, err
    assert err[0].startswith("asr-kd: error: data: import_manifest takes no ['num_dev', 'num_test', "
                             "'num_train', 'num_unlabeled']")


def test_a_checkpoint_cut_short_by_a_full_disk_names_the_file(tmp_path, monkeypatch):
    def torch_on_a_full_disk(obj, f):  # what torch.save raises when the disk fills
        raise RuntimeError("[enforce fail at inline_container.cc:664] . PytorchStreamWriter failed writing "
                           "file data/0: file write failed")

    monkeypatch.setattr(torch, "save", torch_on_a_full_disk)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10 << 30, 10 << 30, 0))
    with pytest.raises(OSError, match=f"No space left on device: '{tmp_path / 'model.pt'}'"), \
            atomic_path(tmp_path / "model.pt") as tmp:
        torch.save({}, tmp)
    assert not list(tmp_path.iterdir())
