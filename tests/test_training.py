"""The training loop: LR schedule, SpecAugment (masks keep alignment, time warp moves frames),
and resuming a killed run only under the same settings."""

from __future__ import annotations

import contextlib

import pytest
import torch

from asr_kd.training.loop import SpecAugment, TrainConfig, _time_warp


def test_lr_warms_up_then_decays_to_the_floor():
    cfg = TrainConfig(steps=100, warmup_steps=10, peak_lr=1.0, final_lr_ratio=0.1)
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
    """Eight random 'utterances' of 12 frames x 4 features, each with a 3-token transcript."""

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.items = [
            {"id": f"u{i}", "feats": torch.randn(12, 4, generator=g), "tokens": torch.tensor([1, 2, 1])}
            for i in range(8)
        ]

    def __len__(self):
        return len(self.items)

    def num_frames(self, i):
        return 12

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
    from asr_kd.training.loop import train

    calls = []

    def objective(logits, lengths, batch, progress):
        calls.append(1)
        if kill_at is not None and len(calls) == kill_at:
            raise _Killed
        return _ctc_objective(logits, lengths, batch)

    cfg = TrainConfig(steps=6, max_frames=24, warmup_steps=1, eval_every=2, num_workers=0, spec_augment=None)
    with contextlib.suppress(_Killed):
        train(_Linear(), objective, _TinySet(), None, cfg, tmp_path, resume_key=key)
    return len(calls)


def test_killed_run_resumes_only_under_the_same_key(tmp_path):
    assert _run(tmp_path, "settings-a", kill_at=4) == 4  # killed during step 4; last.pt holds step 2
    assert (tmp_path / "last.pt").exists()
    assert _run(tmp_path, "settings-a") == 4  # steps 3..6
    assert not (tmp_path / "last.pt").exists()  # removed once finished
    _run(tmp_path, "settings-a", kill_at=4)
    assert _run(tmp_path, "settings-b") == 6  # other settings: the stale last.pt is not used


def test_asking_for_a_gpu_without_one_is_a_clear_error():
    from asr_kd.training.distributed import resolve_device

    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA device"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="bf16"):
        TrainConfig(precision="fp16")


def _ddp_rank(rank: int, world: int, port: int, out_dir: str) -> None:
    """One torchrun-like rank: the environment torchrun would set, then the ordinary train()."""
    import os

    from asr_kd.training.loop import train

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.manual_seed(rank)  # different initial weights: DDP must broadcast rank 0's
    model = _Linear()
    cfg = TrainConfig(steps=4, max_frames=24, warmup_steps=1, eval_every=100, num_workers=0,
                      spec_augment=None, device="cpu", threads=1)
    train(model, _ctc_objective, _TinySet(), None, cfg, out_dir)
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
