"""Load test of ``asr-kd-onnx serve``: how many parallel WebSocket streams one server holds in real time.

    python benchmarks/bench_server.py EXPORT_DIR [--streams 1,2,4,8] [--seconds 4] [--wav FILE] [--int8]

Starts the server on 127.0.0.1 (a free port), then for each count N of ``--streams`` opens N
connections at once, each sending ``--seconds`` of audio as 16-bit PCM in 100 ms messages paced at
the speed of speech, then ``"done"``. A stream's lag is the time from the end of its audio (start +
audio seconds) to its final result; it is *held in real time* when the lag is at most
``--max-lag`` seconds (default 1.0: a chunk and its compute). Prints one line per N and stops the
server. Bounded: at most 64 streams, 30 s of audio per stream and one server process; loopback only.
Needs no PyTorch; ``--wav`` (mono, at the model's rate) defaults to synthetic speech-like audio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MESSAGE_S = 0.1


def synthetic_audio(seconds: float, rate: int) -> np.ndarray:
    """A gliding tone with a syllable-rate envelope and noise: enough to keep every layer busy."""
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(0)
    return (0.3 * np.sin(2 * np.pi * (200 + 150 * np.sin(3 * t)) * t) * (1 + np.sin(7 * t))
            + rng.normal(0, 0.02, t.size)).astype(np.float32)


async def one_stream(port: int, pcm: np.ndarray, rate: int) -> float:
    """Send ``pcm`` paced in real time, then "done"; returns the lag of the final result (seconds)."""
    from websockets.asyncio.client import connect

    piece = int(rate * MESSAGE_S)
    async with connect(f"ws://127.0.0.1:{port}/ws", max_queue=None) as ws:
        start = time.perf_counter()

        async def send():
            for offset in range(0, len(pcm), piece):  # each piece sent once it has been "recorded"
                end = min(offset + piece, len(pcm)) / rate
                await asyncio.sleep(max(0.0, start + end - time.perf_counter()))
                await ws.send(pcm[offset : offset + piece].tobytes())
            await ws.send("done")

        sender = asyncio.create_task(send())
        async for reply in ws:
            if json.loads(reply)["type"] in ("final", "error"):
                break
        await sender
        return time.perf_counter() - (start + len(pcm) / rate)


async def load(port: int, streams: int, pcm: np.ndarray, rate: int) -> list[float]:
    return await asyncio.gather(*(one_stream(port, pcm, rate) for _ in range(streams)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("export_dir")
    parser.add_argument("--streams", default="1,2,4,8", help="comma-separated counts of parallel streams")
    parser.add_argument("--seconds", type=float, default=4.0, help="audio per stream (at most 30)")
    parser.add_argument("--max-lag", type=float, default=1.0, help="lag of a stream held in real time (s)")
    parser.add_argument("--wav", help="audio to send (default: synthetic)")
    parser.add_argument("--int8", action="store_true", help="serve model.int8.onnx")
    args = parser.parse_args()
    counts = [int(n) for n in args.streams.split(",")]
    if not counts or min(counts) < 1 or max(counts) > 64 or not 0 < args.seconds <= 30:
        parser.error("--streams must be counts in 1..64 and --seconds in (0, 30]")
    rate = json.loads((Path(args.export_dir) / "meta.json").read_text())["sample_rate"]
    if args.wav:
        import soundfile as sf
        import soxr

        wav, wav_rate = sf.read(args.wav, dtype="float32", always_2d=True)
        wav = soxr.resample(wav.mean(axis=1), wav_rate, rate)[: int(args.seconds * rate)]
    else:
        wav = synthetic_audio(args.seconds, rate)
    pcm = (np.clip(wav, -1, 1) * 32767).astype("<i2")
    command = [sys.executable, "-m", "asr_kd.runtime", "serve", args.export_dir, "--host", "127.0.0.1",
               "--port", "0", *(["--int8"] if args.int8 else [])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.getenv("PYTHONPATH")]))}
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        port = int(server.stdout.readline().rsplit(":", 1)[1].split("/")[0])
        print(f"server on 127.0.0.1:{port}, {os.cpu_count()} CPUs, {len(pcm) / rate:.1f} s per stream, "
              f"held = final result within {args.max_lag:.1f} s of the audio's end")
        for n in counts:
            lags = sorted(asyncio.run(asyncio.wait_for(load(port, n, pcm, rate), args.seconds + 60)))
            held = sum(lag <= args.max_lag for lag in lags)
            print(f"{n:3d} streams: {held:3d} held in real time; lag median {lags[len(lags) // 2]:.2f} s, "
                  f"max {lags[-1]:.2f} s", flush=True)
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
