"""Decode a set of utterances with an export and measure it as a device would run it (sherpa-onnx
for a ``wenet_ctc`` export, asr_kd's graph runner for the Emformer's: asr_kd.runtime.folder): one
onnxruntime thread, audio fed in small pieces (front end included), CPU time per utterance, and the
peak resident memory of a process that holds only this runtime (no PyTorch).

    python -m asr_kd.runtime.measure JOB.json      # prints {"rows": [...], "base_rss_mb", "peak_rss_mb"}

``JOB.json``: ``{"export_dir", "int8", "piece_ms", "audio": a raw float32 file of every utterance's
samples back to back, "utts": [{"id", "offset", "samples"}]}`` (offsets and lengths in samples).
Each utterance is read from ``audio`` with ``numpy.fromfile`` (a copy, not a memory map, so the
set's audio never counts as resident at once). Rows: ``{"id", "hyp", "duration", "compute_s",
"wall_s"}``, the first utterance decoded once before the timings (one-time allocations).

Memory: ``peak_rss_mb`` is the process's peak resident set size at the end, in MB of 1e6 bytes:
interpreter, numpy, sherpa-onnx (or onnxruntime), the graph and the decode's working memory;
``base_rss_mb`` is the same figure before the graph is loaded (what the interpreter and libraries
take alone). This process imports nothing of torch, so neither figure includes it, which a
measurement inside the training process could not avoid (``tracemalloc`` sees none of
onnxruntime's native allocations). On Linux the peak is ``VmHWM`` of ``/proc/self/status``, the
high-water mark of this program's own memory: ``getrusage``'s ``ru_maxrss`` survives ``execve``, so in
a child of a large process it reports the parent's peak. Elsewhere it is ``ru_maxrss``.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

from asr_kd.runtime.loader import load_model

__all__ = ["decode_set", "peak_rss_mb"]


def peak_rss_mb() -> float:
    """Peak resident set size of this program so far, MB (see module docstring)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e6  # kB
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak * (1 if sys.platform == "darwin" else 1024) / 1e6  # macOS: bytes, others: KiB


def decode_set(export_dir: str | Path, audio: str | Path, utts: list[dict], int8: bool = False,
               piece_ms: float = 10) -> dict:
    """Stream each utterance of ``utts`` (see module docstring) through the export on one thread."""
    base = peak_rss_mb()
    model = load_model(export_dir, int8=int8, threads=1)
    piece = max(1, int(model.sample_rate * piece_ms / 1000))

    def transcribe(samples: np.ndarray) -> str:
        stream = model.stream()
        for offset in range(0, len(samples), piece):
            stream.accept_waveform(samples[offset : offset + piece])
        return stream.finalize()

    def read(utt: dict) -> np.ndarray:
        return np.fromfile(audio, dtype=np.float32, count=utt["samples"], offset=4 * utt["offset"])

    if utts:
        transcribe(read(utts[0]))  # warm-up
    rows = []
    for utt in utts:
        samples = read(utt)
        cpu, wall = time.process_time(), time.perf_counter()
        hyp = transcribe(samples)
        rows.append({"id": utt["id"], "hyp": hyp, "duration": len(samples) / model.sample_rate,
                     "compute_s": time.process_time() - cpu, "wall_s": time.perf_counter() - wall})
    return {"rows": rows, "base_rss_mb": round(base, 1), "peak_rss_mb": round(peak_rss_mb(), 1)}


def main(argv: list[str] | None = None) -> int:
    """``python -m asr_kd.runtime.measure JOB.json``: the result as one JSON line on stdout."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m asr_kd.runtime.measure JOB.json", file=sys.stderr)
        return 2
    job = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    result = decode_set(job["export_dir"], job["audio"], job["utts"], job["int8"], job["piece_ms"])
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
