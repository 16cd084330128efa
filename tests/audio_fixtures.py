"""Audio files for tests: a clean tone, and the broken files real corpora contain.

Each ``broken`` maker writes one bad file into a folder and returns its path; tests/data/test_audio.py
checks that loading each is a clear error, tests/data/test_validate.py that validation catches it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000

# (extension, soundfile subtype): every encoding a corpus may hand us
FORMATS = [
    ("wav", "PCM_U8"),  # 8-bit
    ("wav", "PCM_16"),
    ("wav", "PCM_24"),
    ("wav", "PCM_32"),
    ("wav", "FLOAT"),
    ("wav", "DOUBLE"),
    ("flac", "PCM_16"),
    ("flac", "PCM_24"),
    ("ogg", "VORBIS"),
]


def tone(seconds: float, sr: int = SR, channels: int = 1, freq: float = 220.0) -> np.ndarray:
    """A sine at 0.3 of full scale, ``(N,)`` or ``(N, channels)``."""
    t = np.arange(round(seconds * sr)) / sr
    wav = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return wav if channels == 1 else np.stack([wav] * channels, axis=1)


def write(path: Path, wav: np.ndarray, sr: int = SR, **kw) -> Path:
    """``soundfile.write`` that returns the path."""
    sf.write(path, wav, sr, **kw)
    return path


def _cut_in_half(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # the header still declares the full length
    return path


def truncated_wav(d: Path) -> Path:
    return _cut_in_half(write(d / "cut.wav", tone(1.0), subtype="PCM_16"))


def truncated_flac(d: Path) -> Path:
    noise = np.random.default_rng(0).normal(0, 0.1, 2 * SR).astype(np.float32)
    return _cut_in_half(write(d / "cut.flac", noise))


def garbage(d: Path) -> Path:
    (d / "bad.wav").write_bytes(b"not audio at all " * 20)
    return d / "bad.wav"


def zero_length(d: Path) -> Path:
    return write(d / "empty.wav", np.zeros(0, np.float32))


def empty_file(d: Path) -> Path:
    (d / "nothing.flac").write_bytes(b"")
    return d / "nothing.flac"


def missing(d: Path) -> Path:
    return d / "nope.wav"


BROKEN: dict[str, Callable[[Path], Path]] = {
    "missing": missing,
    "garbage bytes": garbage,
    "empty file": empty_file,
    "truncated wav": truncated_wav,
    "truncated flac": truncated_flac,
    "zero length": zero_length,
}
