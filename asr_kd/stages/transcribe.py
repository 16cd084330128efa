"""Stage ``transcribe``: print the transcript of one audio file (not part of ``stage=all``).

Reads:  ``audio=FILE`` (any format/rate soundfile reads) and ``models/<model>/model.pt`` (or
        ``model=PATH/model.pt``: any bundle; the exp_dir is then not needed).
Writes: nothing; the transcript goes to stdout. Streaming models (the students) are fed the audio
        in pieces of ``transcribe.piece_ms`` and print each new partial result as it comes, then the
        final one; offline models (the teacher) print the final result only.
Run:    ``asr-kd stage=transcribe audio=FILE.wav [model=teacher|student_ctc|student_kd|PATH]
        [transcribe.streaming=false] [transcribe.piece_ms=10] [transcribe.realtime=true]``
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import torch
from omegaconf import DictConfig

from asr_kd.data.audio import load_audio
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


def transcribe_streaming(bundle: Bundle, wav, cfg: DictConfig, out=None) -> str:
    """Feed ``wav`` in pieces, print each changed partial hypothesis with the audio time it came at
    (to ``out``, default stdout)."""
    out = out or sys.stdout
    rec = StreamingRecognizer(bundle, chunk_frames=cfg.transcribe.chunk_frames)
    piece = max(1, int(rec.sample_rate * cfg.transcribe.piece_ms / 1000))
    log.info("streaming: %d ms chunks, algorithmic latency %.0f ms, %d ms pieces",
             rec.chunk_frames * bundle.model.subsampling_factor * bundle.frontend["frame_shift_ms"],
             rec.algorithmic_latency_ms, cfg.transcribe.piece_ms)
    shown, start = "", time.perf_counter()
    for offset in range(0, len(wav), piece):
        partial = rec.accept_waveform(wav[offset : offset + piece])
        position = min(offset + piece, len(wav)) / rec.sample_rate
        if cfg.transcribe.realtime:
            time.sleep(max(0.0, position - (time.perf_counter() - start)))
        if partial != shown:
            print(f"[{position:6.2f} s] {partial}", file=out, flush=True)
            shown = partial
    return rec.finalize()


def run(cfg: DictConfig) -> str:
    if not cfg.audio:
        raise ConfigError("stage=transcribe needs audio=FILE (e.g. `asr-kd stage=transcribe audio=a.wav`)")
    path = model_path(cfg)
    bundle = load_bundle(path)
    wav = load_audio(cfg.audio, bundle.frontend["sample_rate"])
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.decode.threads)
    try:
        start = time.process_time()
        if bundle.model.streaming and cfg.transcribe.streaming:
            text = transcribe_streaming(bundle, wav, cfg)
        else:
            text = OfflineRecognizer(bundle)(wav)
        compute = time.process_time() - start
    finally:
        torch.set_num_threads(threads)
    duration = len(wav) / bundle.frontend["sample_rate"]
    log.info("%s: %.2f s of audio, %s (%s), RTF %.4f", cfg.audio, duration, cfg.model, path,
             compute / max(duration, 1e-9))
    print(text, flush=True)
    return text
