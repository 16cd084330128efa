"""Audio reading with soundfile: any rate resampled, any channel count mixed to mono.

``torchaudio.load`` needs torchcodec + FFmpeg, so audio I/O goes through ``soundfile`` (WAV in
every PCM/float width, FLAC, OGG...). Resampling uses ``torchaudio.functional.resample``.
"""

from __future__ import annotations

import os

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

__all__ = ["AudioError", "load_audio", "save_audio"]


class AudioError(ValueError):
    """An audio file that cannot be used; the message names the file and the reason."""


def load_audio(
    path: str | os.PathLike,
    sample_rate: int = 16000,
    start: float = 0.0,
    end: float | None = None,
) -> np.ndarray:
    """Read ``path`` (optionally the span ``[start, end)`` seconds) as mono float32 at ``sample_rate``.

    Raises :class:`AudioError` for a missing, unreadable, truncated or empty file.
    """
    if not os.path.exists(path):
        raise AudioError(f"{path}: audio file does not exist")
    try:
        with sf.SoundFile(path) as f:
            native_sr = f.samplerate
            first = int(round(start * native_sr))
            last = f.frames if end is None else min(int(round(end * native_sr)), f.frames)
            if first > 0:
                f.seek(first)
            wav = f.read(max(last - first, 0), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, EOFError) as e:
        raise AudioError(f"{path}: unreadable audio ({e})") from e
    if wav.shape[0] == 0:
        raise AudioError(f"{path}: no audio samples in [{start}, {end}) s")
    wav = wav.mean(axis=1)
    if native_sr != sample_rate:
        wav = AF.resample(torch.from_numpy(wav), native_sr, sample_rate).numpy()
    return np.ascontiguousarray(wav, dtype=np.float32)


def save_audio(path: str | os.PathLike, wav: np.ndarray, sample_rate: int) -> None:
    """Write 16-bit PCM WAV (atomically: temp file + rename)."""
    from asr_kd.utils import atomic_path

    with atomic_path(path) as tmp:
        sf.write(tmp, wav, sample_rate, subtype="PCM_16", format="WAV")
