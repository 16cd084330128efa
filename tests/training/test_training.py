"""The training loop: LR schedule, SpecAugment (masks keep alignment, time warp moves frames),
seeded runs that reproduce, and killed runs that resume to the uninterrupted run's weights (only
under the same settings), with logs that continue rather than repeat."""

from __future__ import annotations

import contextlib
import json
import random
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from asr_kd.data.dataset import DurationBatchSampler
from asr_kd.errors import ChecksumError, ConfigError, DataError, UnsafeFileError
from asr_kd.training import seed_everything
from asr_kd.training.loop import SpecAugment, TrainConfig, _rng_state, _set_rng_state, _time_warp, train

CONF = Path(__file__).resolve().parents[2] / "conf"
DEFAULTS = OmegaConf.to_container(OmegaConf.load(CONF / "train" / "default.yaml").teacher)


def config(**overrides) -> TrainConfig:
    """The teacher's training settings of conf/train/default.yaml, with ``overrides``."""
    return TrainConfig(**{**DEFAULTS, **overrides})


def test_lr_warms_up_then_decays_to_the_floor():
    cfg = config(steps=100, warmup_steps=10, peak_lr=1.0, final_lr_ratio=0.1)
    lrs = [cfg.lr_at(s) for s in range(101)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))  # monotone decay after warm-up
    assert lrs[100] == pytest.approx(0.1)


def test_masks_keep_frames_in_place():
    torch.manual_seed(0)
    feats = torch.randn(3, 50, 20)
    out = SpecAugment(freq_masks=1, freq_width=5, time_masks=1, time_width=5)(
        feats, torch.tensor([50, 40, 30])
    )
    assert out.shape == feats.shape
    same = (out == feats).float().mean()
    assert 0.5 < same < 1.0  # something masked, most frames untouched where they were


def test_time_warp_moves_frames_but_keeps_length_and_padding():
    torch.manual_seed(1)
    ramp = torch.arange(40, dtype=torch.float32)[:, None].repeat(1, 4)  # frame t holds value t
    ramp[30:] = -1  # padding beyond the 30 valid frames
    warped = _time_warp(ramp, length=30, width=5)
    assert warped.shape == ramp.shape
    assert torch.equal(warped[30:], ramp[30:])  # padding untouched
    assert not torch.allclose(warped[:30], ramp[:30])  # frames moved in time
    assert torch.all(warped[1:30, 0] >= warped[:29, 0] - 1e-5)  # still monotone: a warp, not a shuffle


class _TinySet(torch.utils.data.Dataset):
    """Random 'utterances' of ``lengths`` frames x 4 features, each with a 3-token transcript."""

    frame_shift_s = 0.01

    def __init__(self, lengths=(12,) * 8):
        g = torch.Generator().manual_seed(0)
        self.items = [
            {"id": f"u{i}", "feats": torch.randn(n, 4, generator=g), "tokens": torch.tensor([1, 2, 1])}
            for i, n in enumerate(lengths)
        ]

    def __len__(self):
        return len(self.items)

    def num_frames(self, i):
        return len(self.items[i]["feats"])

    def __getitem__(self, i):
        return self.items[i]


class _Killed(Exception):
    pass


class _Linear(torch.nn.Module):
    """A per-frame linear CTC model over 3 tokens."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(4, 3)

    def forward(self, feats, lengths):
        return self.proj(feats).log_softmax(-1), lengths


def _ctc_objective(logits, lengths, batch, progress=0.0):
    from asr_kd.distill.loss import ctc_loss

    return ctc_loss(logits, lengths, batch.targets, batch.target_lengths), {}


def _run(tmp_path, key, kill_at=None):
    """Train a linear CTC model; returns how many steps this call computed."""
    calls = []

    def objective(logits, lengths, batch, progress):
        calls.append(1)
        if kill_at is not None and len(calls) == kill_at:
            raise _Killed
        return _ctc_objective(logits, lengths, batch)

    cfg = config(steps=6, max_frames=24, warmup_steps=1, eval_every=100, checkpoint_every=2,
                      checkpoint_minutes=0, num_workers=0, spec_augment=None)
    with contextlib.suppress(_Killed):
        train(_Linear(), objective, _TinySet(), None, cfg, tmp_path, resume_key=key)
    return len(calls)


class _TinyDev(_TinySet):
    """:class:`_TinySet` with transcripts and a tokenizer: a dev set ``evaluate_wer`` can score."""

    def __init__(self):
        super().__init__()
        self.utts = [SimpleNamespace(id=item["id"], text="a b a") for item in self.items]
        self.tokenizer = SimpleNamespace(decode=lambda ids: " ".join("_ab"[i] for i in ids))


def test_stop_ends_training_at_an_evaluation_and_logs_why(tmp_path):
    asked = []

    def stop(step, metrics):
        asked.append(step)
        return "hopeless" if step == 4 else None

    cfg = config(steps=10, max_frames=24, warmup_steps=1, eval_every=2, checkpoint_every=0,
                 checkpoint_minutes=0, num_workers=0, spec_augment=None)
    metrics = train(_Linear(), _ctc_objective, _TinySet(), _TinyDev(), cfg, tmp_path, stop=stop)
    rows = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert asked == [2, 4] and "wer" in metrics
    assert rows[-1] == {"step": 4, "stopped": "hopeless"} and max(r["step"] for r in rows) == 4


def _names(folder):
    return sorted(p.name for p in folder.glob("ckpt-*.pt"))


def test_killed_run_resumes_only_under_the_same_key(tmp_path):
    assert _run(tmp_path, "settings-a", kill_at=4) == 4  # killed during step 4; saved at step 2
    assert _names(tmp_path) == ["ckpt-00000002.pt"]
    assert _run(tmp_path, "settings-a") == 4  # steps 3..6
    assert _names(tmp_path) == []  # removed once finished
    _run(tmp_path, "settings-a", kill_at=6)
    assert _names(tmp_path) == ["ckpt-00000002.pt", "ckpt-00000004.pt"]
    assert _run(tmp_path, "settings-b", kill_at=2) == 2  # other settings: the stale ones are not used...
    assert _names(tmp_path) == []  # ...and removed, so they can never be taken for this run's
    assert _run(tmp_path, "settings-b") == 6


def test_random_states_survive_a_weights_only_round_trip(tmp_path):
    cpu = torch.device("cpu")
    seed_everything(3)
    np.random.standard_normal()  # a cached Gaussian is part of numpy's state
    torch.save(_rng_state(cpu), tmp_path / "rng.pt")
    expected = (random.random(), np.random.standard_normal(), torch.rand(2))
    seed_everything(4)
    _set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True), cpu)
    drawn = (random.random(), np.random.standard_normal(), torch.rand(2))
    assert drawn[:2] == expected[:2] and torch.equal(drawn[2], expected[2])


def test_a_planted_checkpoint_never_runs_code(tmp_path, code_payload):
    payload, marker = code_payload
    torch.save({"step": 2, "resume_key": "settings-a", "rng": payload}, tmp_path / "ckpt-00000002.pt")
    with pytest.raises(UnsafeFileError) as e:
        _run(tmp_path, "settings-a")
    assert not marker.exists()
    assert "ckpt-00000002.pt: refusing to load" in str(e.value) and "\n" not in str(e.value)


def test_a_corrupted_checkpoint_is_named_not_resumed(tmp_path):
    _run(tmp_path, "settings-a", kill_at=4)
    ckpt = tmp_path / "ckpt-00000002.pt"
    data = bytearray(ckpt.read_bytes())
    data[-200] ^= 0xFF  # bit rot inside the zip: torch may still read it
    ckpt.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match=r"ckpt-00000002.pt: checksum mismatch"):
        _run(tmp_path, "settings-a")


def test_training_that_skips_most_steps_fails(tmp_path):
    calls = []

    def nan_mostly(logits, lengths, batch, progress):
        calls.append(1)
        loss, parts = _ctc_objective(logits, lengths, batch)
        return (loss * float("nan") if len(calls) % 3 else loss), parts  # as NaN features would

    cfg = config(steps=30, max_frames=24, warmup_steps=1, eval_every=100, checkpoint_every=0,
                 checkpoint_minutes=0, num_workers=0, spec_augment=None)
    with pytest.raises(DataError, match=r"7 batches skipped .* non-finite features or labels") as e:
        train(_Linear(), nan_mostly, _TinySet(), None, cfg, tmp_path)
    assert "\n" not in str(e.value)


def test_checkpoint_settings_are_checked():
    for steps in (0, -5):
        with pytest.raises(ConfigError, match="steps must be >= 1"):
            config(steps=steps)
    with pytest.raises(ValueError, match="keep_checkpoints"):
        config(keep_checkpoints=0)
    with pytest.raises(ValueError, match="checkpoint_every"):
        config(checkpoint_every=-1)


@pytest.mark.parametrize("override,where", [
    ("train.student.steps=0", "train.student"),
    ("+systems.student_ctc.train.steps=-5", "systems.student_ctc.train"),
])
def test_steps_below_one_are_refused_at_start_naming_the_node(override, where):
    from hydra import compose, initialize_config_dir

    from asr_kd.stages.plan import Plan

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[override])
    with pytest.raises(ConfigError, match=rf"^{re.escape(where)}: train steps must be >= 1, not -?\d+$"):
        Plan(cfg)


def test_sampler_starts_an_epoch_at_a_batch_offset_without_loading_the_skipped_batches():
    lengths = [5, 9, 12, 7, 11, 6, 10, 8, 12, 5]
    sampler = DurationBatchSampler(lengths, max_frames=24, seed=3)
    sampler.set_epoch(2)
    full = list(sampler)
    sampler.set_epoch(2, start=3)
    assert list(sampler) == full[3:] and len(sampler) == len(full) - 3
    sampler.set_epoch(3)
    assert len(sampler) == len(full)  # the offset holds for one epoch only

    class Recording(_TinySet):
        def __getitem__(self, i):
            loaded.append(i)
            return super().__getitem__(i)

    from asr_kd.data.dataset import collate

    loaded = []
    sampler.set_epoch(2, start=3)
    list(torch.utils.data.DataLoader(Recording(lengths), batch_sampler=sampler, collate_fn=collate))
    assert sorted(loaded) == sorted(i for b in full[3:] for i in b)


class _DropoutNet(torch.nn.Module):
    """A per-frame two-layer CTC model with dropout over 3 tokens: random init, random masks."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Dropout(0.3),
                                       torch.nn.Linear(16, 3))

    def forward(self, feats, lengths):
        return self.net(feats).log_softmax(-1), lengths


_LENGTHS = (9, 14, 12, 7, 15, 10, 13, 8, 11, 12)  # 10 utterances, batches of uneven sizes


def _seeded_run(out_dir, seed=0, num_workers=1, kill_at=None, draws=0, **overrides):
    """What a stage does: seed, build the model, train (time masks + dropout draw random numbers);
    ``kill_at``: the objective raises at that call, as a kill would stop the process there;
    ``draws``: random numbers drawn between building the model and training it."""
    calls = []

    def objective(logits, lengths, batch, progress):
        calls.append(1)
        if len(calls) == kill_at:
            raise _Killed
        return _ctc_objective(logits, lengths, batch)

    cfg = config(**{
        "steps": 30, "max_frames": 30, "warmup_steps": 2, "peak_lr": 0.05, "eval_every": 100,
        "checkpoint_every": 0, "checkpoint_minutes": 0, "num_workers": num_workers, "seed": seed,
        "spec_augment": {"freq_masks": 1, "freq_width": 2, "time_masks": 1, "time_width": 3},
        "threads": 1, "device": "cpu", **overrides,
    })
    seed_everything(seed)
    model = _DropoutNet()
    torch.rand(draws)
    with contextlib.suppress(_Killed):
        train(model, objective, _TinySet(_LENGTHS), None, cfg, out_dir, resume_key="k")
    return model.state_dict()


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_gives_the_same_weights_whatever_the_loader_workers(tmp_path):
    first = _seeded_run(tmp_path / "a", seed=0)
    assert _same(first, _seeded_run(tmp_path / "b", seed=0))
    assert _same(first, _seeded_run(tmp_path / "c", seed=0, num_workers=0))  # workers draw nothing
    assert _same(first, _seeded_run(tmp_path / "e", seed=0, draws=3))  # train() seeds its own streams
    assert not _same(first, _seeded_run(tmp_path / "d", seed=1))


def test_killed_run_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    whole = _seeded_run(tmp_path / "whole")
    out = tmp_path / "killed"
    # Checkpoints at steps 7, 14, 21 (two kept); killed in step 27, after step 25 was logged.
    _seeded_run(out, kill_at=27, checkpoint_every=7, keep_checkpoints=2)
    assert _names(out) == ["ckpt-00000014.pt", "ckpt-00000021.pt"]
    state = torch.load(out / "ckpt-00000021.pt", weights_only=True)  # plain data, RNG states included
    epoch = DurationBatchSampler(_LENGTHS, max_frames=30)
    epoch.set_epoch(state["epoch"])
    assert state["step"] == 21 and 0 < state["position"] < len(epoch)  # saved inside an epoch
    resumed = _seeded_run(out, checkpoint_every=7, keep_checkpoints=2)
    assert _same(whole, resumed)
    assert _names(out) == []

    def log(folder):
        return [json.loads(line) for line in (folder / "train_log.jsonl").read_text().splitlines()]

    assert [r["step"] for r in log(out)] == [25, 30]  # the killed run's step 25 is not repeated
    assert [r["loss"] for r in log(out)] == [r["loss"] for r in log(tmp_path / "whole")]
    events = EventAccumulator(str(out / "tb"))
    events.Reload()
    assert len(list((out / "tb").iterdir())) == 2  # two attempts...
    assert [e.step for e in events.Scalars("loss")] == [25, 30]  # ...one curve


def test_asking_for_a_gpu_without_one_is_a_clear_error():
    from asr_kd.training.distributed import resolve_device

    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA device"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="bf16"):
        config(precision="fp16")


def _ddp_rank(rank: int, world: int, port: int, out_dir: str) -> None:
    """One torchrun-like rank: the environment torchrun would set, then the ordinary train()."""
    import os

    from asr_kd.training.loop import train

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.manual_seed(rank)  # different initial weights: DDP must broadcast rank 0's
    model = _Linear()
    # A checkpoint by the clock after every step: rank 0's clock decides, every rank's RNG is saved.
    cfg = config(steps=4, max_frames=24, warmup_steps=1, eval_every=100, checkpoint_every=0,
                      checkpoint_minutes=1e-9, num_workers=0, spec_augment=None, device="cpu", threads=1)
    calls = []

    def objective(logits, lengths, batch, progress):
        calls.append(1)
        if rank == 0 and len(calls) == 4:  # in step 4: the checkpoint of step 3 is on disk
            saved = torch.load(f"{out_dir}/ckpt-00000003.pt", weights_only=False)
            torch.save([s["torch"] for s in saved["rng"]], f"{out_dir}/rng.pt")
        return _ctc_objective(logits, lengths, batch)

    train(model, objective, _TinySet(), None, cfg, out_dir)
    torch.save(model.state_dict(), f"{out_dir}/rank{rank}.pt")
    torch.distributed.destroy_process_group()


def test_ddp_ranks_share_the_batches_and_end_with_the_same_weights(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_ddp_rank, args=(2, port, str(tmp_path)), nprocs=2)
    a, b = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert all(torch.equal(a[k], b[k]) for k in a)  # gradients were averaged across the ranks
    log = (tmp_path / "train_log.jsonl").read_text().splitlines()
    assert len(log) == 1  # rank 0 alone writes the metrics (one line, at the last step)
    rng = torch.load(tmp_path / "rng.pt")
    assert len(rng) == 2 and not torch.equal(rng[0], rng[1])  # each rank's own random state
    assert not list(tmp_path.glob("ckpt-*.pt"))
