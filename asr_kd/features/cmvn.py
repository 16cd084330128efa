"""Global cepstral mean and variance normalisation, estimated once on the training features.

Per-utterance CMVN does not exist online, so teacher and streaming student share global stats.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from asr_kd.utils import read_json, write_json

__all__ = ["CMVNAccumulator", "GlobalCMVN"]


class CMVNAccumulator:
    """Streaming sums of features (float64) for mean and variance."""

    def __init__(self, dim: int):
        self.count = 0
        self.sum = np.zeros(dim)
        self.sum_sq = np.zeros(dim)

    def update(self, feats: np.ndarray) -> None:
        feats = feats.astype(np.float64)
        self.count += feats.shape[0]
        self.sum += feats.sum(0)
        self.sum_sq += (feats**2).sum(0)

    def finalize(self) -> GlobalCMVN:
        if self.count == 0:
            raise ValueError("no frames to estimate CMVN from")
        mean = self.sum / self.count
        std = np.sqrt(np.maximum(self.sum_sq / self.count - mean**2, 1e-8))
        return GlobalCMVN(mean, std, self.count)


class GlobalCMVN:
    """``(x - mean) / std`` with statistics saved as JSON beside the features (and in checkpoints)."""

    def __init__(self, mean, std, count: int = 0):
        self.mean = torch.as_tensor(np.asarray(mean), dtype=torch.float32)
        self.std = torch.as_tensor(np.asarray(std), dtype=torch.float32)
        self.count = count

    def __call__(self, feats: torch.Tensor) -> torch.Tensor:
        """Normalise ``(..., T, F)`` features."""
        return (feats - self.mean) / self.std

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "count": self.count}

    @classmethod
    def from_dict(cls, d: dict) -> GlobalCMVN:
        return cls(d["mean"], d["std"], d.get("count", 0))

    def save(self, path: str | os.PathLike) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> GlobalCMVN:
        return cls.from_dict(read_json(path))
