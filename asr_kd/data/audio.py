"""Audio reading with soundfile: any rate resampled, any channel count mixed to mono.

``torchaudio.load`` needs torchcodec + FFmpeg, so audio I/O goes through ``soundfile``: WAV in every
PCM width (8/16/24/32-bit) and float, FLAC, OGG/Vorbis, and whatever else libsndfile reads.
Resampling uses ``torchaudio.functional.resample``. Every failure is an :class:`AudioError` whose
message starts with the file's path.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from asr_kd.errors import UserError

__all__ = ["AudioError", "load_audio", "stream_audio", "read_span", "save_audio", "speed_perturb",
           "wav_truncation"]


class AudioError(UserError, ValueError):
    """An audio file that cannot be used; the message names the file and the reason."""


def _check_file(path: str | os.PathLike) -> None:
    """Raise :class:`AudioError` for a missing, empty or truncated audio file, or a folder."""
    if os.path.isdir(path):
        raise AudioError(f"{path}: is a directory, not an audio file")
    if not os.path.isfile(path):
        raise AudioError(f"{path}: audio file does not exist")
    if os.path.getsize(path) == 0:
        raise AudioError(f"{path}: empty file (0 bytes), not audio")
    truncated = wav_truncation(path)
    if truncated:
        raise AudioError(f"{path}: {truncated}")


def _check_finite(wav: np.ndarray, path: str | os.PathLike, rate: int, first: int = 0) -> np.ndarray:
    """``wav``, after checking that it holds no NaN or infinite sample (a float file can)."""
    bad = np.flatnonzero(~np.isfinite(wav).all(axis=1))
    if len(bad):
        raise AudioError(f"{path}: NaN or infinite samples ({len(bad)}, the first at "
                         f"{(first + bad[0]) / rate:.2f} s)")
    return wav


def read_span(
    path: str | os.PathLike, start: float = 0.0, end: float | None = None
) -> tuple[np.ndarray, int]:
    """The samples of ``[start, end)`` seconds of ``path`` at its own rate: ``((N, C) float32, rate)``.

    Raises :class:`AudioError` for a missing, unreadable, truncated or empty file, an empty span,
    or NaN or infinite samples.
    """
    _check_file(path)
    try:
        with sf.SoundFile(path) as f:
            rate = f.samplerate
            first = int(round(start * rate))
            last = f.frames if end is None else min(int(round(end * rate)), f.frames)
            if first >= last:
                raise AudioError(
                    f"{path}: no audio samples in [{start}, {end}) s (the file holds {f.frames})"
                )
            if first > 0:
                f.seek(first)
            wav = f.read(last - first, dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, EOFError) as e:
        raise AudioError(f"{path}: unreadable audio ({e})") from e
    if wav.shape[0] == 0:
        raise AudioError(f"{path}: no audio samples in [{start}, {end}) s")
    return _check_finite(wav, path, rate, first), rate


def load_audio(
    path: str | os.PathLike,
    sample_rate: int = 16000,
    start: float = 0.0,
    end: float | None = None,
) -> np.ndarray:
    """Read ``path`` (optionally the span ``[start, end)`` seconds) as mono float32 at ``sample_rate``.

    Channels are averaged; another rate is resampled. Raises :class:`AudioError` as :func:`read_span`.
    """
    wav, rate = read_span(path, start, end)
    mono = wav.mean(axis=1)
    if rate != sample_rate:
        mono = AF.resample(torch.from_numpy(mono), rate, sample_rate).numpy()
    return np.ascontiguousarray(mono, dtype=np.float32)


def stream_audio(path: str | os.PathLike, sample_rate: int = 16000,
                 block_s: float = 10.0) -> Iterator[np.ndarray]:
    """:func:`load_audio` of the whole file in consecutive blocks of about ``block_s`` seconds, read
    and resampled one at a time: memory stays bounded whatever the file's length. A file that cannot
    be read fails here, before the first block.

    Each block is resampled with enough context on both sides, on the whole file's sample grid, so
    the blocks put together are the whole file resampled at once (up to float rounding).
    """
    _check_file(path)
    try:
        f = sf.SoundFile(path)
    except (sf.SoundFileError, RuntimeError, EOFError) as e:
        raise AudioError(f"{path}: unreadable audio ({e})") from e
    if f.frames == 0:
        f.close()
        raise AudioError(f"{path}: no audio samples")
    return _blocks(f, path, sample_rate, block_s)


def _blocks(f: sf.SoundFile, path: str | os.PathLike, sample_rate: int,
            block_s: float) -> Iterator[np.ndarray]:
    """The blocks of :func:`stream_audio` from the open file ``f`` (closed at the end)."""
    rate, total = f.samplerate, f.frames
    step = sample_rate // math.gcd(rate, sample_rate)  # output samples per `orig` input samples
    orig = rate // math.gcd(rate, sample_rate)
    width = math.ceil(6 * orig / (min(orig, step) * 0.99))  # torchaudio's sinc kernel half-width
    context = 0 if rate == sample_rate else orig * (width // orig + 2)
    block = orig * max(1, int(block_s * rate) // orig)
    try:
        with f:
            for first in range(0, total, block):
                last = min(first + block, total)
                start = max(0, first - context)
                f.seek(start)
                wav = f.read(min(last + context, total) - start, dtype="float32", always_2d=True)
                mono = _check_finite(wav, path, rate, start).mean(axis=1)
                if rate != sample_rate:
                    mono = AF.resample(torch.from_numpy(mono), rate, sample_rate).numpy()
                    skip = (first - start) // orig * step
                    mono = mono[skip : None if last == total else skip + (last - first) // orig * step]
                yield np.ascontiguousarray(mono, dtype=np.float32)
    except (sf.SoundFileError, RuntimeError, EOFError) as e:
        raise AudioError(f"{path}: unreadable audio ({e})") from e


def speed_perturb(wav: np.ndarray, factor: float, sample_rate: int) -> np.ndarray:
    """``wav`` played ``factor`` times faster, pitch moving too (``sox speed``): ``N / factor`` samples."""
    if factor == 1.0:
        return wav
    return AF.resample(torch.from_numpy(wav), round(sample_rate * factor), sample_rate).numpy()


def save_audio(path: str | os.PathLike, wav: np.ndarray, sample_rate: int) -> None:
    """Write 16-bit PCM, as WAV or FLAC after ``path``'s suffix, atomically (temp file + rename)."""
    from asr_kd.utils import atomic_path

    fmt = "FLAC" if Path(path).suffix.lower() == ".flac" else "WAV"
    with atomic_path(path) as tmp:
        sf.write(tmp, wav, sample_rate, subtype="PCM_16", format=fmt)


def wav_truncation(path: str | os.PathLike) -> str | None:
    """Why ``path`` is a truncated WAV (its data chunk claims more bytes than the file holds), else ``None``.

    libsndfile reads such a file without complaint, shortened; a copy cut off mid-transfer looks like
    this. Files that are not RIFF/RIFX WAVE are not looked at.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
            return None
        layout = "<4sI" if head[:4] == b"RIFF" else ">4sI"
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk_id, chunk_size = struct.unpack(layout, f.read(8))
            if chunk_id == b"data":
                available = size - pos - 8
                if chunk_size != 0xFFFFFFFF and chunk_size > available:  # 0xFFFFFFFF: size unknown (streamed)
                    declared = f"the WAV header declares {chunk_size} data bytes"
                    return f"truncated audio: {declared}, the file holds {available}"
                return None
            pos += 8 + chunk_size + (chunk_size & 1)
    return None
