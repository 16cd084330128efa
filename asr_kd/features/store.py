"""Feature store: one split's log-mel frames in one memory-mapped file plus a JSON index.

Layout of ``<exp_dir>/features/<split>/``:

* ``feats.f16``  raw little-endian float16, shape ``(total_frames, F)``, utterances back to back;
* ``index.json`` ``{"dim": F, "total_frames": int, "frontend": {...},
  "utts": {id: {"offset": int, "frames": int, "audio_sha": str}}}``.

Features are stored *before* CMVN so that statistics can change without re-extraction; readers
apply :class:`asr_kd.features.cmvn.GlobalCMVN`. Both files are written under temporary names and
renamed when complete, index last, so a present index means a complete store; each gets a
``.sha256`` sidecar, checked when a process first opens the store (asr_kd.integrity: SHA-256 runs
at ~1 GB/s, ~0.1 s for the demo's train features), so bit rot is named, never trained on.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from asr_kd.errors import DataError, MissingFileError
from asr_kd.integrity import checksummed, verify_checksum
from asr_kd.utils import read_json, write_json

__all__ = ["FeatureWriter", "FeatureStore", "StoreUnion"]

DTYPE = np.float16


class FeatureWriter:
    """Append utterances' features in order, then :meth:`close` to publish the store."""

    def __init__(self, folder: str | os.PathLike, dim: int, frontend: dict):
        self.folder = Path(folder)
        self.dim = dim
        self.frontend = frontend
        self.utts: dict[str, dict] = {}
        self.total = 0
        self._ctx = checksummed(self.folder / "feats.f16")
        self._tmp = self._ctx.__enter__()
        self._file = open(self._tmp, "wb")  # noqa: SIM115 (open across add() calls; closed in close/abort)

    def add(self, utt_id: str, feats: np.ndarray, audio_sha: str) -> None:
        if feats.ndim != 2 or feats.shape[1] != self.dim:
            raise ValueError(f"{utt_id}: features of shape {feats.shape}, expected (T, {self.dim})")
        self._file.write(np.ascontiguousarray(feats, dtype=DTYPE).tobytes())
        self.utts[utt_id] = {"offset": self.total, "frames": int(feats.shape[0]), "audio_sha": audio_sha}
        self.total += feats.shape[0]

    def close(self) -> None:
        self._file.close()
        self._ctx.__exit__(None, None, None)
        index = {"dim": self.dim, "total_frames": self.total, "frontend": self.frontend, "utts": self.utts}
        with checksummed(self.folder / "index.json") as tmp:
            write_json(tmp, index)

    def abort(self) -> None:
        self._file.close()
        self._ctx.__exit__(RuntimeError, None, None)


class _Indexed:
    """What a store answers from its index alone, ``utts: {id: {"offset", "frames", "audio_sha"}}``."""

    utts: dict[str, dict]

    def __len__(self) -> int:
        return len(self.utts)

    def __contains__(self, utt_id: str) -> bool:
        return utt_id in self.utts

    def num_frames(self, utt_id: str) -> int:
        return self.utts[utt_id]["frames"]


class FeatureStore(_Indexed):
    """Random access to a split's features: ``store[utt_id] -> (T, F) float32`` array."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        index_path = self.folder / "index.json"
        if not index_path.exists():
            raise MissingFileError(f"{self.folder}: no feature index; run `asr-kd stage=features` first")
        rerun = "re-run `asr-kd stage=features force=true`"
        verify_checksum(index_path, rerun)
        index = read_json(index_path)
        self.dim: int = index["dim"]
        self.frontend: dict = index["frontend"]
        self.utts: dict[str, dict] = index["utts"]
        shape = (index["total_frames"], self.dim)
        expected = shape[0] * shape[1] * np.dtype(DTYPE).itemsize
        size = (self.folder / "feats.f16").stat().st_size
        if size != expected:
            raise DataError(f"{self.folder}/feats.f16: {size} bytes, index expects {expected}; {rerun}")
        verify_checksum(self.folder / "feats.f16", rerun)
        self._data = np.memmap(self.folder / "feats.f16", dtype=DTYPE, mode="r", shape=shape)

    def __getitem__(self, utt_id: str) -> np.ndarray:
        entry = self.utts[utt_id]
        return np.asarray(self._data[entry["offset"] : entry["offset"] + entry["frames"]], dtype=np.float32)


class StoreUnion(_Indexed):
    """Several splits' stores read as one (a system that trains on more than one split)."""

    def __init__(self, stores: list[FeatureStore]):
        dims = {store.dim for store in stores}
        if len(dims) != 1:
            folders = [str(s.folder) for s in stores]
            raise ValueError(f"feature stores of different dimensions {sorted(dims)}: {folders}")
        self.dim, self.frontend = stores[0].dim, stores[0].frontend
        self._owner = {utt_id: store for store in stores for utt_id in store.utts}
        self.utts = {utt_id: store.utts[utt_id] for utt_id, store in self._owner.items()}

    def __getitem__(self, utt_id: str) -> np.ndarray:
        return self._owner[utt_id][utt_id]
