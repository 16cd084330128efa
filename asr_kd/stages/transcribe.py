"""Stage ``transcribe``: print the transcript of one audio file (not part of ``stage=all``).

Reads:  ``audio=FILE`` (any format/rate soundfile reads) and ``models/<model>/model.pt`` (or
        ``model=PATH/model.pt``: any bundle; the exp_dir is then not needed).
Writes: nothing; the transcript goes to stdout. Streaming models (the students) are fed the audio
        in pieces of ``transcribe.piece_ms``, read from disk block by block (bounded memory, however
        long the file), and print what each partial result adds as it comes (``[  1.20 s] new
        words``), then the whole final text; offline models (the teacher) print the final text only.
Run:    ``asr-kd stage=transcribe audio=FILE.wav [model=teacher|student_ctc|student_kd|PATH]
        [transcribe.streaming=false] [transcribe.piece_ms=10] [transcribe.realtime=true]``
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from asr_kd.data.audio import load_audio, stream_audio
from asr_kd.decoding.offline import OfflineRecognizer
from asr_kd.decoding.streaming import StreamingRecognizer
from asr_kd.errors import ConfigError, MissingFileError
from asr_kd.models.bundle import Bundle, load_bundle
from asr_kd.stages.base import exp_paths

log = logging.getLogger(__name__)


def model_path(cfg: DictConfig) -> Path:
    """``model`` as a checkpoint: a path to a ``.pt`` file, else a system of ``exp_dir``."""
    if str(cfg.model).endswith(".pt") or Path(str(cfg.model)).is_file():
        return Path(str(cfg.model))
    path = exp_paths(cfg).checkpoint(str(cfg.model))
    if not path.exists():
        raise MissingFileError(
            f"{path}: no model {cfg.model!r} in {cfg.exp_dir}; train it (`asr-kd stage=all "
            f"exp_dir={cfg.exp_dir}`) or pass model=PATH/model.pt"
        )
    return path


def transcribe_streaming(bundle: Bundle, blocks: Iterable[np.ndarray], cfg: DictConfig,
                         out=None) -> tuple[str, float]:
    """Feed the audio ``blocks`` in pieces; each time the hypothesis grows, print what it adds (to
    ``out``, default stdout) with the audio time it came at. Memory stays bounded. Returns the final
    text and the audio's duration (s)."""
    out = out or sys.stdout
    rec = StreamingRecognizer(bundle, chunk_frames=cfg.transcribe.chunk_frames, keep_logits=False)
    piece = max(1, int(rec.sample_rate * cfg.transcribe.piece_ms / 1000))
    log.info("streaming: %d ms chunks, algorithmic latency %.0f ms, %d ms pieces",
             rec.chunk_frames * bundle.model.subsampling_factor * bundle.frontend["frame_shift_ms"],
             rec.algorithmic_latency_ms, cfg.transcribe.piece_ms)
    shown, start = "", time.perf_counter()
    for samples in _pieces(blocks, piece):
        partial = rec.accept_waveform(samples)
        position = rec.samples_in / rec.sample_rate
        if cfg.transcribe.realtime:
            time.sleep(max(0.0, position - (time.perf_counter() - start)))
        if partial != shown:
            print(f"[{position:6.2f} s] {_added(shown, partial)}", file=out, flush=True)
            shown = partial
    return rec.finalize(), rec.samples_in / rec.sample_rate


def _pieces(blocks: Iterable[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """The samples of ``blocks`` in pieces of ``size`` (the last one shorter)."""
    rest = np.zeros(0, dtype=np.float32)
    for block in blocks:
        rest = np.concatenate([rest, block])
        whole = len(rest) - len(rest) % size
        yield from (rest[i : i + size] for i in range(0, whole, size))
        rest = rest[whole:]
    if len(rest):
        yield rest


def _added(shown: str, partial: str) -> str:
    """What ``partial`` adds to the ``shown`` hypothesis; should it change what was shown, the
    hypothesis from the first changed word on, after ``…``."""
    if partial.startswith(shown):
        return partial[len(shown):]
    common = len(os.path.commonprefix([shown, partial]))
    return "…" + partial[partial.rfind(" ", 0, common) + 1:]


def run(cfg: DictConfig) -> str:
    if not cfg.audio:
        raise ConfigError("stage=transcribe needs audio=FILE (e.g. `asr-kd stage=transcribe audio=a.wav`)")
    if cfg.transcribe.piece_ms <= 0 or (cfg.transcribe.chunk_frames or 1) < 1:
        raise ConfigError(f"transcribe.piece_ms must be > 0 and transcribe.chunk_frames >= 1 (or null), got "
                          f"{cfg.transcribe.piece_ms} and {cfg.transcribe.chunk_frames}")
    path = model_path(cfg)
    bundle = load_bundle(path)
    rate = bundle.frontend["sample_rate"]
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.decode.threads)
    try:
        start = time.process_time()
        if bundle.model.streaming and cfg.transcribe.streaming:
            text, duration = transcribe_streaming(bundle, stream_audio(cfg.audio, rate), cfg)
        else:
            wav = load_audio(cfg.audio, rate)
            text, duration = OfflineRecognizer(bundle)(wav), len(wav) / rate
        compute = time.process_time() - start
    finally:
        torch.set_num_threads(threads)
    log.info("%s: %.2f s of audio, %s (%s), RTF %.4f", cfg.audio, duration, cfg.model, path,
             compute / max(duration, 1e-9))
    print(text, flush=True)
    return text
