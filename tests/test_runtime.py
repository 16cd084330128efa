"""The torch-free runtime: kaldi-native-fbank matches the training front end; asr-kd-onnx transcribes
with torch (and asr_kd outside asr_kd.runtime) unimportable; the server keeps concurrent streams
apart, survives malformed and oversized messages, and serves its web page."""

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from test_export import speech_like, varied_bundle

from asr_kd.data.audio import save_audio
from asr_kd.export.onnx import KALDI_FBANK_OPTIONS, export_bundle
from asr_kd.features.frontend import KaldiFbank
from asr_kd.runtime.fbank import StreamingFbank
from asr_kd.runtime.onnx_transcriber import OnnxModel

ROOT = Path(__file__).resolve().parent.parent

#: Runs asr-kd-onnx with torch and every asr_kd module outside asr_kd.runtime made unimportable.
NO_TORCH = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        outside = name.startswith("asr_kd.") and not name.startswith("asr_kd.runtime")
        if name.split(".")[0] == "torch" or outside:
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
from asr_kd.runtime.cli import main
code = main(sys.argv[1:])
print("LOADED", *sorted(m for m in sys.modules if m.startswith("asr_kd")), file=sys.stderr)
sys.exit(code)
"""


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runtime")
    export_bundle(varied_bundle(folder), folder / "onnx", int8=False)
    return folder / "onnx"


@pytest.fixture(scope="module")
def wav_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("audio") / "a.wav"
    save_audio(path, speech_like(2.3, seed=5), 16000)
    return path


def expected_text(export_dir, wav: np.ndarray) -> str:
    stream = OnnxModel(export_dir).stream()
    stream.accept_waveform(wav)
    return stream.finalize()


def test_fbank_matches_training_front_end():
    wav = speech_like(1.37)
    ref = KaldiFbank()(wav).numpy()
    fbank = StreamingFbank({**KaldiFbank().config(), **KALDI_FBANK_OPTIONS})
    sizes = np.random.default_rng(0).integers(1, 3000, size=40)
    pieces, offset = [], 0
    for size in sizes:
        pieces.append(fbank.accept(wav[offset : offset + size]))
        offset += size
    pieces.append(fbank.accept(wav[offset:]))
    out = np.concatenate(pieces)
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() < 1e-3  # measured 8e-5 (log mel energies up to ~25)


def test_transcriber_runs_without_torch(export_dir, wav_file):
    from asr_kd.data.audio import load_audio

    start = time.perf_counter()
    command = [sys.executable, "-c", NO_TORCH, str(export_dir), str(wav_file), "--piece-ms", "50"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    elapsed = time.perf_counter() - start
    assert result.returncode == 0, result.stderr
    loaded = result.stderr.split("LOADED", 1)[1].split()
    assert all(m == "asr_kd" or m.startswith("asr_kd.runtime") for m in loaded)
    lines = result.stdout.strip().splitlines()
    text = expected_text(export_dir, load_audio(wav_file, 16000))
    assert text and lines[-1] == text
    assert lines[0].startswith("[") and len(lines) >= 2  # partial results before the final one
    assert elapsed < 10  # start-up is < 1 s unloaded; this bounds the whole run on a busy machine


def test_transcriber_reports_a_missing_export(tmp_path, wav_file):
    result = subprocess.run([sys.executable, "-m", "asr_kd.runtime", str(tmp_path), str(wav_file)],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "model.onnx: missing" in result.stderr


async def client(port: int, messages: list) -> list[dict]:
    """Send ``messages`` (bytes or text), return every JSON reply until the server closes."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    replies = []
    async with connect(f"ws://127.0.0.1:{port}/ws") as ws:
        async def receive():
            try:
                async for reply in ws:
                    replies.append(json.loads(reply))
            except ConnectionClosed:
                pass

        receiver = asyncio.create_task(receive())
        try:
            for message in messages:
                await ws.send(message)
                await asyncio.sleep(0)
        except ConnectionClosed:
            pass
        await asyncio.wait_for(receiver, 30)
    return replies


def pcm_messages(wav: np.ndarray, samples: int = 1600) -> list:
    pcm = (np.clip(wav, -1, 1) * 32767).astype("<i2")
    return [pcm[i : i + samples].tobytes() for i in range(0, len(pcm), samples)] + ["done"]


def test_server_concurrent_streams_and_bad_messages(export_dir):
    server = subprocess.Popen([sys.executable, "-c", NO_TORCH, "serve", str(export_dir), "--port", "0"],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        port = int(server.stdout.readline().rsplit(":", 1)[1].split("/")[0])
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).read().decode()
        assert "getUserMedia" in page and "WebSocket" in page
        # sent as 16-bit PCM: compare with the same quantized audio
        wavs = [np.round(speech_like(s, seed) * 32767) / 32768 for s, seed in ((2.1, 1), (1.6, 2))]
        expected = [expected_text(export_dir, w.astype(np.float32)) for w in wavs]
        assert expected[0] != expected[1]

        async def scenario():
            return await asyncio.gather(
                client(port, pcm_messages(wavs[0])),
                client(port, pcm_messages(wavs[1])),
                client(port, [b"\x00\x01", b"\x00", b"\x00\x01"]),  # odd byte count: malformed
                client(port, [b"\x00" * 100_000]),  # oversized
                client(port, ["hello"]),  # text other than "done"
            )

        first, second, odd, big, text = asyncio.run(asyncio.wait_for(scenario(), 60))
        for replies, want in ((first, expected[0]), (second, expected[1])):
            assert replies[-1] == {"type": "final", "text": want}
            assert any(r["type"] == "partial" for r in replies)
        for replies, word in ((odd, "malformed"), (big, "oversized"), (text, "unexpected text")):
            assert replies[-1]["type"] == "error" and word in replies[-1]["message"]
        after = asyncio.run(asyncio.wait_for(client(port, pcm_messages(wavs[0])), 30))
        assert after[-1] == {"type": "final", "text": expected[0]} and server.poll() is None
    finally:
        server.terminate()
        server.wait(10)
