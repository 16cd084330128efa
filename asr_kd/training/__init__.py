"""One readable training loop (DDP-ready), and the seeding that makes its runs reproduce."""

from __future__ import annotations

import random

import numpy as np
import torch

__all__ = ["seed_everything"]


def seed_everything(seed: int) -> None:
    """Seed every global random stream a run draws from: Python's ``random``, NumPy's global
    generator, torch's CPU generator and the generators of every CUDA device.

    Call it before building a model, so that its initial weights depend on ``seed`` alone;
    :func:`asr_kd.training.loop.train` calls it again (``cfg.seed`` + rank) before its first step, so
    that dropout, SpecAugment and time warping do not depend on how many numbers model building drew.
    The batch order has its own generator (``DurationBatchSampler``: ``seed`` + epoch) and the loader
    workers theirs (seeded from ``seed``; they load features and draw nothing), so neither the number
    of loader workers nor a resume moves these streams.

    Same seed and config on the same machine give bit-identical weights on the CPU. GPU kernels that
    accumulate with atomics (CTC loss backward among them) can differ in the last bits between runs.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # the CPU and every CUDA device
