"""Decoding a whole test set, one utterance at a time as a device would: offline from the stored
features, or streamed from the audio in pieces; each row ``{"id", "ref", "hyp", "duration",
"compute_s", "wall_s"}`` (CPU and elapsed seconds), and :func:`summarize` for the summary row
(the decode file's contract: asr_kd.stages.decode)."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from tqdm import tqdm

from asr_kd.data.audio import load_audio
from asr_kd.data.dataset import UtteranceDataset
from asr_kd.decoding.offline import emissions, greedy_search
from asr_kd.decoding.streaming import StreamingRecognizer
from asr_kd.models.adapters import TeacherAdapter
from asr_kd.models.bundle import Bundle

__all__ = ["decode_offline", "decode_streaming", "summarize"]


def decode_offline(
    bundle: Bundle | TeacherAdapter,
    dataset: UtteranceDataset,
    search: Callable[[torch.Tensor], str] | None = None,
    on_scores: Callable[[str, str, torch.Tensor], None] | None = None,
) -> list[dict]:
    """Full-context decode, one utterance at a time (as a device would run it); greedy by default.
    ``on_scores(id, text, scores)``, if given, sees each utterance's ``(T, V)`` scores, off the clock."""
    search = search or greedy_search(bundle)
    rows = []
    with torch.inference_mode():  # warm-up: one-time allocations stay out of the timings
        emissions(bundle, dataset, 0)
    for i in tqdm(range(len(dataset)), desc="decode", dynamic_ncols=True, leave=False):
        utt = dataset.utts[i]
        clock = _Clock()
        with torch.inference_mode():
            scores = emissions(bundle, dataset, i)
        hyp = search(scores)
        rows.append({"id": utt.id, "ref": utt.text, "hyp": hyp, "duration": utt.duration, **clock.read()})
        if on_scores is not None:
            on_scores(utt.id, utt.text, scores)
    return rows


def decode_streaming(
    bundle: Bundle, dataset: UtteranceDataset, piece_ms: float, chunk_frames: int | None = None,
    on_scores: Callable[[str, str, torch.Tensor], None] | None = None,
) -> list[dict]:
    """Feed each utterance's audio in ``piece_ms`` pieces through the streaming recognizer;
    ``on_scores`` as :func:`decode_offline`'s, on the streamed logits."""
    recognizer = StreamingRecognizer(bundle, chunk_frames=chunk_frames)
    sr = recognizer.sample_rate
    piece = max(1, int(sr * piece_ms / 1000))
    rows = []
    first = dataset.utts[0]
    recognizer.accept_waveform(load_audio(first.audio, sr, first.start, first.end))  # warm-up
    recognizer.finalize()
    for utt in tqdm(dataset.utts, desc="stream", dynamic_ncols=True, leave=False):
        wav = load_audio(utt.audio, sr, utt.start, utt.end)
        recognizer.reset()
        clock = _Clock()
        for offset in range(0, len(wav), piece):
            recognizer.accept_waveform(wav[offset : offset + piece])
        hyp = recognizer.finalize()
        rows.append({"id": utt.id, "ref": utt.text, "hyp": hyp, "duration": len(wav) / sr, **clock.read()})
        if on_scores is not None:
            on_scores(utt.id, utt.text, recognizer.logits)
    return rows


class _Clock:
    """CPU and elapsed seconds since construction."""

    def __init__(self):
        self.cpu, self.wall = time.process_time(), time.perf_counter()

    def read(self) -> dict:
        return {"compute_s": time.process_time() - self.cpu, "wall_s": time.perf_counter() - self.wall}


def summarize(rows: list[dict]) -> dict:
    """Utterances, audio seconds and the real-time factors (CPU-based ``rtf``, elapsed ``rtf_wall``)."""
    audio = sum(r["duration"] for r in rows)
    return {"utterances": len(rows), "audio_s": audio, "rtf": sum(r["compute_s"] for r in rows) / audio,
            "rtf_wall": sum(r["wall_s"] for r in rows) / audio}
