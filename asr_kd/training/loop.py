"""The training loop shared by teacher and students: AdamW, warm-up + cosine LR, SpecAugment,
gradient clipping, periodic dev WER, JSON-lines + TensorBoard metrics, resumable checkpoints.

Runs on the CPU or a GPU (``device``, optionally bf16 autocast), in one process or under
``torchrun`` (DDP: each rank takes its share of the batches; asr_kd.training.distributed).

Seeded and resumable: ``train`` seeds every random stream from ``cfg.seed``
(:func:`asr_kd.training.seed_everything`), and its checkpoints (every ``checkpoint_every`` steps
and/or ``checkpoint_minutes``) hold the step, the position in the epoch's batch order and every
random state, so a killed run resumes to the weights an uninterrupted one would have reached. They
are plain data with a checksum, read back with ``weights_only=True`` (asr_kd.integrity).

A batch whose gradient is not finite is skipped; once more than :data:`MAX_SKIPPED` of ``steps``
were, training fails (non-finite features or labels, most likely) instead of publishing a model.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torchaudio.transforms as T
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from asr_kd.data.dataset import Batch, DurationBatchSampler, UtteranceDataset, collate
from asr_kd.errors import ConfigError, DataError, UnreadableFileError
from asr_kd.integrity import checksummed, discard, load_torch
from asr_kd.models.ctc import ctc_greedy
from asr_kd.scoring.wer import error_rates
from asr_kd.training import seed_everything
from asr_kd.training.distributed import barrier, init_distributed, resolve_device
from asr_kd.utils import write_jsonl

__all__ = ["TrainConfig", "SpecAugment", "train", "train_step", "evaluate_wer", "LossFn", "seed_everything",
           "Checkpointer"]

log = logging.getLogger(__name__)

#: ``loss_fn(logits (B, T, V), out_lengths (B,), batch, progress) -> (loss, {name: value})``;
#: ``progress`` is the fraction of training done, ``step / steps`` in [0, 1), for scheduled losses.
#: The share of ``steps`` that may be skipped for a non-finite gradient before training fails.
MAX_SKIPPED = 0.2

LossFn = Callable[[torch.Tensor, torch.Tensor, Batch, float], tuple[torch.Tensor, dict[str, float]]]


@dataclass
class SpecAugment:
    """SpecAugment: torchaudio's frequency and time masks, plus optional time warping.

    Masks keep frame alignment, so cached teacher targets still fit the masked features. Time
    warping moves frames in time: it is for CTC training only, and the student stage turns it off
    (with a warning) for systems that distil frame by frame.
    """

    freq_masks: int = 2
    freq_width: int = 15
    time_masks: int = 2
    time_width: int = 20
    time_warp: int = 0  # W: the warp point moves by up to W frames (0: off)

    def __post_init__(self):
        self.masks = T.SpecAugment(
            n_time_masks=self.time_masks,
            time_mask_param=self.time_width,
            n_freq_masks=self.freq_masks,
            freq_mask_param=self.freq_width,
            iid_masks=True,
        )

    def __call__(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Augmented copy of ``(B, T, F)`` features (each utterance masked and warped independently)."""
        if self.time_warp > 0:
            pairs = zip(feats, lengths, strict=True)
            feats = torch.stack([_time_warp(f, int(n), self.time_warp) for f, n in pairs])
        return self.masks(feats.transpose(1, 2)).transpose(1, 2)


def _time_warp(feats: torch.Tensor, length: int, width: int) -> torch.Tensor:
    """Stretch ``feats[:c]`` onto ``[:c + w]``, squeeze the rest of the ``length`` valid frames after it."""
    if length <= 2 * width + 1:
        return feats
    center = int(torch.randint(width, length - width, ()))
    dest = center + int(torch.randint(-width + 1, width, ()))
    valid = feats[:length].T[None]  # (1, F, T)
    left = nn.functional.interpolate(valid[..., :center], size=dest, mode="linear", align_corners=False)
    right = nn.functional.interpolate(
        valid[..., center:], size=length - dest, mode="linear", align_corners=False
    )
    out = feats.clone()
    out[:length] = torch.cat([left, right], dim=-1)[0].T
    return out


@dataclass
class TrainConfig:
    """Types of the optimisation settings; the values live in one place, ``conf/train/default.yaml``
    (teacher, and a student block that starts from it), and a system may override any of them."""

    steps: int
    max_frames: int  # feature frames per batch, padding included
    peak_lr: float
    warmup_steps: int
    final_lr_ratio: float  # the cosine decay ends at peak_lr * final_lr_ratio
    weight_decay: float
    grad_clip: float
    eval_every: int
    checkpoint_every: int  # steps between checkpoints (0: off)
    checkpoint_minutes: float  # minutes between checkpoints (0: off)
    keep_checkpoints: int  # the newest checkpoints kept; older ones are deleted
    num_workers: int
    threads: int | None  # torch threads; None: this rank's share of the CPU cores
    seed: int
    spec_augment: dict | None  # SpecAugment's arguments; null: off
    device: str  # auto (a GPU when there is one) | cpu | cuda | cuda:N
    precision: str  # fp32 | bf16 (autocast on GPUs; the losses stay in fp32)

    #: Settings that change how a run goes, not what it learns: left out of fingerprints, so a
    #: changed checkpoint interval or worker count neither retrains nor loses a resume.
    RUNTIME_KEYS = ("checkpoint_every", "checkpoint_minutes", "keep_checkpoints", "num_workers", "threads")

    def __post_init__(self):
        if self.steps < 1:
            raise ConfigError(f"train steps must be >= 1, not {self.steps}")
        if self.precision not in ("fp32", "bf16"):
            raise ConfigError(f"train precision must be fp32 or bf16, not {self.precision!r}")
        for key in ("max_frames", "peak_lr", "grad_clip", "eval_every", "threads"):
            if getattr(self, key) is not None and getattr(self, key) <= 0:
                raise ConfigError(f"train {key} must be > 0, not {getattr(self, key)}")
        for key in ("warmup_steps", "weight_decay", "num_workers"):
            if getattr(self, key) < 0:
                raise ConfigError(f"train {key} must be >= 0, not {getattr(self, key)}")
        if not 0 <= self.final_lr_ratio <= 1:
            raise ConfigError(f"train final_lr_ratio must lie in [0, 1], not {self.final_lr_ratio}")
        for key in ("checkpoint_every", "checkpoint_minutes"):
            if getattr(self, key) < 0:
                raise ConfigError(f"train {key} must be >= 0 (0: off), not {getattr(self, key)}")
        if self.keep_checkpoints < 1:
            raise ConfigError(f"train keep_checkpoints must be >= 1, not {self.keep_checkpoints}")

    def lr_at(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.peak_lr * (step + 1) / self.warmup_steps
        progress = (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
        floor = self.final_lr_ratio
        return self.peak_lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def _loader(
    dataset: UtteranceDataset, max_frames: int, num_workers: int, shuffle: bool, seed: int = 0, rank=0,
    world=1, pin_memory=False,
) -> DataLoader:
    lengths = [dataset.num_frames(i) for i in range(len(dataset))]
    sampler = DurationBatchSampler(lengths, max_frames, shuffle, seed, rank=rank, world_size=world)
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        prefetch_factor=4 if num_workers > 0 else None,
        pin_memory=pin_memory,
        # The workers' seeds come from here, not from torch's global generator: the number of
        # workers, the epochs and a resume then leave dropout's and SpecAugment's stream alone.
        generator=torch.Generator().manual_seed(seed),
    )


@torch.no_grad()
def evaluate_wer(model: nn.Module, dataset: UtteranceDataset, max_frames: int = 20000) -> dict[str, float]:
    """Greedy-CTC WER/CER of ``model`` on ``dataset`` (full-context forward, on the model's device)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    loader = _loader(dataset, max_frames, num_workers=0, shuffle=False)
    refs, hyps = [], []
    texts = {u.id: u.text for u in dataset.utts}
    for batch in loader:
        logits, lengths = model(batch.feats.to(device), batch.lengths.to(device))
        for utt_id, ids in zip(batch.ids, ctc_greedy(logits.cpu(), lengths.cpu()), strict=True):
            refs.append(texts[utt_id])
            hyps.append(dataset.tokenizer.decode(ids))
    model.train(was_training)
    return error_rates(refs, hyps)


class _MetricsLog:
    """Metrics as JSON lines (always) and TensorBoard events (when available), continuing from
    ``step``: what a killed run logged after it is dropped (``train_log.jsonl`` rewritten
    atomically, TensorBoard's ``purge_step``), so each step appears once."""

    def __init__(self, folder: Path, enabled: bool, step: int):
        self.enabled = enabled
        self.path = folder / "train_log.jsonl"
        self.tb = None
        if not enabled:
            return
        if self.path.exists():
            rows = []
            for line in self.path.read_text(encoding="utf-8").splitlines():
                with contextlib.suppress(json.JSONDecodeError):  # a line cut short by a kill
                    rows.append(json.loads(line))
            write_jsonl(self.path, [row for row in rows if row["step"] <= step])
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(folder / "tb"), purge_step=step + 1)
        except ImportError:  # tensorboard is optional
            self.tb = None

    def write(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, **values}) + "\n")
        if self.tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)):  # numbers; a note (``stopped``) is in the JSON line only
                    self.tb.add_scalar(k, v, step)
            self.tb.flush()  # on disk at once, like the JSON line: a killed run keeps what it logged

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def make_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW with the fused kernel where torch has one (CPU, CUDA): it updates every parameter in
    one pass, ~4x faster than the per-tensor loop, which cost ~4% of a teacher step on 2 CPU cores."""
    return torch.optim.AdamW(model.parameters(), lr=cfg.peak_lr, weight_decay=cfg.weight_decay,
                             fused=device.type in ("cpu", "cuda"))


def train_step(
    model: nn.Module,
    loss_fn: LossFn,
    batch: Batch,
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
    step: int,
    augment: SpecAugment | None = None,
    autocast: contextlib.AbstractContextManager | None = None,
) -> tuple[torch.Tensor, dict[str, float], float]:
    """One optimisation step on ``batch`` (on the model's device): LR of ``step``, SpecAugment, forward
    (under ``autocast``), loss, backward, clipping, update. Returns ``(loss, parts, grad_norm)``; a
    non-finite ``grad_norm`` means the update was skipped."""
    for group in optimizer.param_groups:
        group["lr"] = cfg.lr_at(step)
    feats = augment(batch.feats, batch.lengths) if augment is not None else batch.feats
    with autocast or contextlib.nullcontext():
        logits, out_lengths = model(feats, batch.lengths)
    loss, parts = loss_fn(logits, out_lengths, batch, step / cfg.steps)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    grad_norm = float(nn.utils.clip_grad_norm_(params, cfg.grad_clip))
    if math.isfinite(grad_norm):
        optimizer.step()
    return loss, parts, grad_norm


def _rng_state(device: torch.device) -> dict:
    """Every random stream a training step draws from (dropout, SpecAugment, time warping), as plain
    data (tensors, ints, lists) that ``torch.load(weights_only=True)`` reads back."""
    kind, key, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "numpy": [kind, key.tolist(), pos, has_gauss, gauss],
             "torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    random.setstate(state["python"])
    kind, key, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.array(key, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _gather(obj, world: int) -> list:
    """``obj`` of every rank, in rank order (``[obj]`` in a single process)."""
    if world == 1:
        return [obj]
    out = [None] * world
    dist.all_gather_object(out, obj)
    return out


def _rank0_says(flag: bool, device: torch.device, world: int) -> bool:
    """Rank 0's ``flag`` on every rank: a decision taken by the clock must be the same on all of them."""
    if world == 1:
        return flag
    value = torch.tensor([float(flag)], device=device)
    dist.broadcast(value, src=0)
    return bool(value.item())


class Checkpointer:
    """Resumable training state in ``folder``: ``ckpt-<step>.pt`` (model, optimiser, step, epoch and
    batch position, every rank's random states, ``resume_key``), written atomically with its
    checksum every ``cfg.checkpoint_every`` steps and/or ``cfg.checkpoint_minutes``, the newest
    ``cfg.keep_checkpoints`` kept; read back only when saved under the same ``resume_key``; all
    deleted when training completes."""

    PATTERN = "ckpt-[0-9]*.pt"

    def __init__(self, folder: Path, cfg: TrainConfig, resume_key: str, name: str):
        self.folder, self.cfg, self.resume_key, self.name = folder, cfg, resume_key, name
        self.last_saved = time.monotonic()

    def _files(self) -> list[Path]:
        """The checkpoints ``ckpt-<step>.pt``, oldest first."""
        return sorted(self.folder.glob(self.PATTERN))

    @staticmethod
    def newest_step(folder: Path) -> int:
        """The step of the newest checkpoint in ``folder``, where a run there resumes (0: none)."""
        return max((int(p.stem.split("-")[1]) for p in folder.glob(Checkpointer.PATTERN)), default=0)

    def load(self) -> dict | None:
        """The newest readable checkpoint if it was saved under ``resume_key``, else None. One that
        fails its checksum or would run code is refused (asr_kd.integrity)."""
        for path in reversed(self._files()):
            try:
                state = load_torch(path, f"delete it (and {path.name}.sha256) to resume from the one before")
            except (OSError, UnreadableFileError) as e:
                log.warning("%s: cannot read %s (%s); trying the one before", self.name, path, e)
                continue
            if not isinstance(state, dict) or state.get("resume_key") != self.resume_key:
                log.warning("%s: %s was saved for other settings or inputs; starting afresh", self.name, path)
                return None
            log.info("%s: resuming from step %d (%s)", self.name, state["step"], path)
            return state
        return None

    def tidy(self, resumed_step: int | None) -> None:
        """Remove what the resumed run (from ``resumed_step``; None: afresh) will not use: other
        settings' checkpoints, unreadable ones or newer ones, and saves cut short by kill -9."""
        for path in self._files():
            if resumed_step is None or int(path.stem.split("-")[1]) > resumed_step:
                discard(path)
        for path in self.folder.glob(".ckpt-*.tmp"):
            path.unlink()

    def due(self, step: int, device: torch.device, world: int) -> bool:
        """Whether to save after ``step`` (every N steps, or N minutes as rank 0's clock says)."""
        if self.cfg.checkpoint_every > 0 and step % self.cfg.checkpoint_every == 0:
            return True
        if self.cfg.checkpoint_minutes > 0:
            return _rank0_says(time.monotonic() - self.last_saved >= 60 * self.cfg.checkpoint_minutes,
                               device, world)
        return False

    def save(self, state: dict, rank: int) -> None:
        """Write ``state`` (rank 0) as ``ckpt-<step>.pt`` and drop the oldest beyond ``keep_checkpoints``."""
        if rank == 0:
            with checksummed(self.folder / f"ckpt-{state['step']:08d}.pt") as tmp:
                torch.save({**state, "resume_key": self.resume_key}, tmp)
            for old in self._files()[: -self.cfg.keep_checkpoints]:
                discard(old)
        self.last_saved = time.monotonic()

    def finish(self) -> None:
        """Training completed: no checkpoint is needed any more."""
        for path in self._files():
            discard(path)


def train(
    model: nn.Module,
    loss_fn: LossFn,
    train_set: UtteranceDataset,
    dev_set: UtteranceDataset | None,
    cfg: TrainConfig,
    out_dir: str | os.PathLike,
    name: str = "model",
    resume_key: str = "",
    stop: Callable[[int, dict[str, float]], str | None] | None = None,
) -> dict[str, float]:
    """Train ``model`` in place for ``cfg.steps`` steps; returns the final dev metrics.

    ``stop(step, dev_metrics)``, asked after each dev evaluation before the last step, may end
    training there with a reason, logged as ``{"step", "stopped": reason}`` in ``train_log.jsonl``
    (early stopping of hopeless candidates, asr_kd.scoring.target).

    The model trains on ``cfg.device`` and is handed back on the CPU, in eval mode. Random streams
    are seeded from ``cfg.seed`` (+ the rank) before the first step; seed before building the model
    too (:func:`seed_everything`) for a run that reproduces from its initial weights on.

    Checkpoints in ``out_dir`` (:class:`Checkpointer`): a killed run resumes from the newest readable
    one and ends with the weights an uninterrupted run would have; checkpoints saved under another
    ``resume_key`` (other settings or inputs) are ignored and removed.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    rank, world = init_distributed(device)
    # One compute thread per core of this rank: the loader workers only wake briefly per batch.
    # (With other busy processes on the machine, pass fewer: OpenMP spins against them.)
    threads = cfg.threads or max(1, len(os.sched_getaffinity(0)) // world)
    torch.set_num_threads(threads)
    seed_everything(cfg.seed + rank)  # each rank draws its own dropout and SpecAugment masks
    core = model.to(device)
    if world > 1:
        device_ids = [device] if device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(core, device_ids=device_ids)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16")
    optimizer = make_optimizer(core, cfg, device)
    augment = SpecAugment(**cfg.spec_augment) if cfg.spec_augment is not None else None
    step, epoch, position = 0, 0, 0  # position: batches of this epoch already taken (this rank's)
    checkpoints = Checkpointer(out_dir, cfg, resume_key, name)
    state = checkpoints.load()
    if state is not None:
        core.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, epoch, position = state["step"], state["epoch"], state["position"]
        if len(state["rng"]) == world:
            _set_rng_state(state["rng"][rank], device)
        else:
            log.warning("%s: the checkpoint was saved by %d rank(s), this run has %d: it goes on from "
                        "step %d, but not as the uninterrupted run would have", name, len(state["rng"]),
                        world, step)
    barrier()  # every rank has read its checkpoint before rank 0 tidies up
    if rank == 0:
        checkpoints.tidy(None if state is None else step)
    log.info(
        "%s: %d steps on %s (%s, %d rank(s)), %d torch thread(s), %d loader worker(s)",
        name, cfg.steps, device, cfg.precision, world, threads, cfg.num_workers,
    )
    metrics = _MetricsLog(out_dir, enabled=rank == 0, step=step)
    loader = _loader(train_set, cfg.max_frames, cfg.num_workers, shuffle=True, seed=cfg.seed, rank=rank,
                     world=world, pin_memory=device.type == "cuda")
    dev_metrics: dict[str, float] = {}
    model.train()
    bar = tqdm(total=cfg.steps, initial=step, desc=f"train {name}", disable=rank != 0, dynamic_ncols=True)
    start, audio_seconds, skipped = time.perf_counter(), 0.0, 0
    frame_shift = train_set.frame_shift_s  # seconds of audio per feature frame (the throughput's clock)
    stopped = False
    while step < cfg.steps and not stopped:
        loader.batch_sampler.set_epoch(epoch, start=position)
        for batch in loader:
            if step >= cfg.steps:
                break
            position += 1
            batch = batch.to(device)
            loss, parts, grad_norm = train_step(model, loss_fn, batch, optimizer, cfg, step, augment,
                                                autocast)
            if not math.isfinite(grad_norm):
                skipped += 1
                log.warning("%s: non-finite gradient at step %d; batch skipped", name, step)
                if skipped > MAX_SKIPPED * cfg.steps:
                    raise DataError(f"{name}: {skipped} batches skipped for a non-finite loss or gradient by "
                                    f"step {step} of {cfg.steps} (more than {MAX_SKIPPED:.0%}); likely "
                                    "non-finite features or labels; nothing published")
                continue
            step += 1
            audio_seconds += float(batch.lengths.sum()) * frame_shift
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if step % 25 == 0 or step == cfg.steps:
                elapsed = time.perf_counter() - start
                metrics.write(
                    step,
                    {
                        "loss": loss.item(),
                        **parts,
                        "lr": cfg.lr_at(step),
                        "grad_norm": grad_norm,
                        "x_realtime": audio_seconds / max(elapsed, 1e-9),
                    },
                )
            reason = None
            if (step % cfg.eval_every == 0 or step == cfg.steps) and dev_set is not None and rank == 0:
                dev_metrics = evaluate_wer(core, dev_set)
                metrics.write(step, {f"dev_{k}": v for k, v in dev_metrics.items() if k != "words"})
                log.info("%s step %d: dev WER %.2f%%", name, step, 100 * dev_metrics["wer"])
                reason = stop(step, dev_metrics) if stop is not None and step < cfg.steps else None
            if stop is not None and step % cfg.eval_every == 0 and step < cfg.steps \
                    and _rank0_says(reason is not None, device, world):
                metrics.write(step, {"stopped": reason})
                log.info("%s: stopped at step %d: %s", name, step, reason)
                stopped = True
                break
            if step < cfg.steps and checkpoints.due(step, device, world):
                rng = _gather(_rng_state(device), world)
                checkpoints.save({"model": core.state_dict(), "optimizer": optimizer.state_dict(),
                                  "step": step, "epoch": epoch, "position": position, "rng": rng}, rank)
        epoch, position = epoch + 1, 0
    bar.close()
    metrics.close()
    if rank == 0:
        checkpoints.finish()
    core.to("cpu").eval()
    return dev_metrics

