"""Past one machine, through the real CLI: the cache as a map over parts (``cache.part``/``cache.parts``)
run by a ``--multirun`` (Hydra's basic launcher, and its submitit launcher's local executor) equals
the single-process cache utterance by utterance and trains the same student; a killed part redoes
only its unfinished shards; a partial cache is refused naming the part."""

import json
import shutil

import numpy as np
import pytest
import torch
from test_pipeline import asr_kd

from asr_kd.distill.cache import CacheIncompleteError, PosteriorCache
from asr_kd.paths import ExpPaths

# The KD student alone (it reads the cache), a few steps of each model: equality, not accuracy.
SMOKE = ("recipe=smoke", "~systems.student_ctc", "train.teacher.steps=4", "train.teacher.eval_every=4",
         "train.student.steps=4", "train.student.eval_every=4")


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    """prepare -> features -> teacher of the smoke recipe, then its single-process cache."""
    exp = tmp_path_factory.mktemp("upstream")
    for stage in ("prepare", "features", "teacher"):
        asr_kd(f"stage={stage}", *SMOKE, f"exp_dir={exp}")
    single = tmp_path_factory.mktemp("single") / "exp"
    shutil.copytree(exp, single)
    asr_kd("stage=cache", *SMOKE, f"exp_dir={single}")
    return exp, single


def _copy(upstream, tmp_path):
    exp = tmp_path / "exp"
    shutil.copytree(upstream[0], exp)
    return exp


def _folder(exp):
    return ExpPaths(exp).cache_dir("teacher_k16", "train")


def _assert_same_cache(a, b):
    ca, cb = PosteriorCache(_folder(a)), PosteriorCache(_folder(b))
    assert sorted(ca._entries) == sorted(cb._entries) and len(ca) == 60
    for key in ca._entries:
        for x, y in zip(ca[key], cb[key], strict=True):
            np.testing.assert_array_equal(x, y)
    stamps = [json.loads((e / "stamps/cache/teacher_k16/train.json").read_text()) for e in (a, b)]
    assert stamps[0]["fingerprint"] == stamps[1]["fingerprint"]


def test_cache_in_two_parts_is_the_single_process_cache_and_trains_the_same_student(upstream, tmp_path):
    exp = _copy(upstream, tmp_path)
    asr_kd("stage=cache", *SMOKE, f"exp_dir={exp}", "cache.parts=2", "cache.part=range(2)", "--multirun")
    assert not (exp / "jobs").exists()  # the parts wrote into the shared exp_dir
    _assert_same_cache(upstream[1], exp)
    for e in (upstream[1], exp):
        asr_kd("stage=student", *SMOKE, f"exp_dir={e}")
    a, b = (torch.load(ExpPaths(e).checkpoint("student_kd"), weights_only=False)["state_dict"]
            for e in (upstream[1], exp))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_submitit_local_launcher_runs_the_parts(upstream, tmp_path):
    exp = _copy(upstream, tmp_path)
    asr_kd("stage=cache", *SMOKE, f"exp_dir={exp}", "cache.parts=2", "cache.part=0,1", "hydra/launcher=local",
           "--multirun")
    assert len(list((exp / "multirun").glob("*/.submitit/*/*_0_result.pkl"))) == 2  # one submitit job a part
    _assert_same_cache(upstream[1], exp)


def test_killed_part_redoes_only_its_unfinished_shards_and_a_partial_cache_is_refused(upstream, tmp_path):
    exp = _copy(upstream, tmp_path)
    folder = _folder(exp)
    asr_kd("stage=cache", *SMOKE, f"exp_dir={exp}", "cache.parts=2", "cache.part=0")  # shards 0 and 2
    (folder / "shard-00001.val").write_bytes(b"\0" * 100)  # part 1 killed mid-shard: no done-marker
    done = {f.name: f.stat().st_mtime_ns for f in folder.glob("shard-0000[02].*")}

    refused = asr_kd("stage=student", *SMOKE, f"exp_dir={exp}", check=False, full_errors=False)
    err = refused.stderr.strip().splitlines()
    assert refused.returncode == 2 and len(err) == 1, refused.stderr[-2000:]
    assert "partial cache, 1 of 3 shards (25 of 60 utterances) unfinished, part(s) 1 of 2" in err[0]
    assert "cache.parts=2 cache.part=1" in err[0]

    rerun = asr_kd("stage=cache", *SMOKE, f"exp_dir={exp}", "cache.parts=2", "cache.part=1")
    assert "part 1 of 2: 1 to write" in rerun.stdout + rerun.stderr
    assert {f.name: f.stat().st_mtime_ns for f in folder.glob("shard-0000[02].*")} == done
    _assert_same_cache(upstream[1], exp)
    (folder / "shard-00002.json").unlink()  # a deleted shard index: a user error, not a loader KeyError
    with pytest.raises(CacheIncompleteError, match=r"part\(s\) 0 of 2 \(shards 2\)"):
        PosteriorCache(folder)
    asr_kd("stage=cache", *SMOKE, f"exp_dir={exp}", "cache.parts=2", "cache.part=0")  # as the error says
    _assert_same_cache(upstream[1], exp)


def test_lhotse_shar_corpus_goes_through_to_a_student(upstream, tmp_path):
    """A Shar corpus written by Lhotse's own ``to_shar`` (untranscribed audio: cuts without supervisions)
    is read as a corpus (data=shar) and distilled: prepare -> features -> teacher -> cache -> student."""
    from lhotse import CutSet

    from asr_kd.data.importers.lhotse_io import export_lhotse
    from asr_kd.data.manifest import read_manifest

    shar = {}
    for split in ("train", "dev", "test_seen", "test_unseen", "unlabeled"):
        export_lhotse(read_manifest(ExpPaths(upstream[0]).manifest(split)), tmp_path / f"{split}.jsonl.gz")
        cuts = CutSet.from_file(tmp_path / f"{split}.jsonl.gz")
        if split == "unlabeled":
            cuts = cuts.drop_supervisions()
        (tmp_path / split).mkdir()
        cuts.to_shar(tmp_path / split, fields={"recording": "flac"}, shard_size=25)
        shar[split] = tmp_path / split
    exp = tmp_path / "exp"
    data = ("data=shar", "~data.num_train", "~data.num_dev", "~data.num_test", "~data.num_unlabeled",
            "data.shar={" + ",".join(f"{k}:{v}" for k, v in shar.items()) + "}")
    for stage in ("prepare", "features", "teacher", "cache", "student"):
        asr_kd(f"stage={stage}", *SMOKE, *data, f"exp_dir={exp}")
    paths = ExpPaths(exp)
    ours, theirs = (read_manifest(ExpPaths(e).manifest("train")) for e in (exp, upstream[0]))
    assert [(u.id, u.text, u.speaker) for u in ours] == [(u.id, u.text, u.speaker) for u in theirs]
    assert all(u.text is None for u in read_manifest(paths.manifest("unlabeled")))
    assert len(PosteriorCache(paths.cache_dir("teacher_k16", "train"))) == 60
    assert paths.checkpoint("student_kd").exists()


def test_submitit_tasks_are_the_ranks_of_one_process_group(tmp_path):
    """One submitit task per rank (hydra #2231): the distributed environment comes from the job's."""
    import submitit

    def rank_sum():
        from asr_kd.training.distributed import init_distributed, resolve_device

        rank, world = init_distributed(resolve_device("cpu"))
        total = torch.tensor([rank + 1.0])
        torch.distributed.all_reduce(total)
        torch.distributed.destroy_process_group()
        return rank, world, float(total)

    executor = submitit.AutoExecutor(folder=tmp_path, cluster="local")
    executor.update_parameters(nodes=1, tasks_per_node=2, timeout_min=2)
    assert sorted(executor.submit(rank_sum).results()) == [(0, 2, 3.0), (1, 2, 3.0)]


@pytest.mark.parametrize("launcher", ["slurm", "local"])
def test_launcher_configs_compose_on_the_plugins_schema(launcher):
    from hydra import compose, initialize_config_dir

    from asr_kd.config import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", [f"hydra/launcher={launcher}"], return_hydra_config=True)
    node = cfg.hydra.launcher
    assert node._target_.endswith({"slurm": "SlurmLauncher", "local": "LocalLauncher"}[launcher])
    keys = {"timeout_min", "gpus_per_node", "tasks_per_node", "nodes"}
    if launcher == "slurm":
        keys |= {"partition", "array_parallelism", "max_num_timeout", "signal_delay_s", "setup"}
    assert keys <= set(node)
