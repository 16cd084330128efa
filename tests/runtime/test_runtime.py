"""The torch-free runtime on top of sherpa-onnx: asr-kd-onnx transcribes any file soundfile reads with
torch (and asr_kd outside asr_kd.runtime and asr_kd.errors) unimportable, and names bad input in
one line; the server keeps concurrent streams apart, survives malformed and oversized messages,
holds its limits (origin, connection cap, idle timeout, bounded streams), stops cleanly on SIGINT and
SIGTERM, and serves its web page, which headless Chromium runs with a WAV file as its microphone
(ASR_KD_NO_BROWSER=1 skips that test; nothing else does). The Emformer's own graph runner keeps its
kaldi-native-fbank front end equal to the training one."""

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from model_fixtures import CONFORMER, damaged_export, make_bundle, speech_like, varied_bundle
from websockets.asyncio.server import serve

from asr_kd.data.audio import save_audio
from asr_kd.export.onnx import KALDI_FBANK_OPTIONS, export_bundle
from asr_kd.features.frontend import KaldiFbank
from asr_kd.runtime.fbank import StreamingFbank
from asr_kd.runtime.loader import load_model
from asr_kd.runtime.server import TranscriptionServer

ROOT = Path(__file__).resolve().parents[2]

#: Runs asr-kd-onnx with torch and every asr_kd module outside asr_kd.runtime made unimportable.
NO_TORCH = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        outside = name.startswith("asr_kd.") and not name.startswith(("asr_kd.runtime", "asr_kd.errors"))
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
    export_bundle(varied_bundle(folder, CONFORMER), folder / "onnx", int8=False)
    return folder / "onnx"


@pytest.fixture(scope="module")
def wav_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("audio") / "a.wav"
    save_audio(path, speech_like(2.3, seed=5), 16000)
    return path


def expected_text(export_dir, wav: np.ndarray) -> str:
    stream = load_model(export_dir).stream()
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
    assert all(m in ("asr_kd", "asr_kd.errors") or m.startswith("asr_kd.runtime") for m in loaded)
    lines = result.stdout.rstrip("\n").splitlines()
    text = expected_text(export_dir, load_audio(wav_file, 16000))
    assert text and lines[-1] == text
    assert lines[0].startswith("[") and len(lines) >= 2  # partial results before the final one
    added = "".join(eval(line.split("] +", 1)[1]) for line in lines[:-1])  # each line: what it adds
    assert text.startswith(added) and len(added) > len(text) / 2
    assert elapsed < 10  # start-up is < 1 s unloaded; this bounds the whole run on a busy machine


def asr_kd_onnx(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "asr_kd.runtime", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_transcriber_reports_a_missing_export(tmp_path, wav_file):
    result = asr_kd_onnx(tmp_path, wav_file)
    assert result.returncode == 2 and "model.onnx: missing" in result.stderr


def test_transcriber_takes_any_rate_and_channels(export_dir, tmp_path):
    """A 22.05 kHz stereo FLAC is downmixed and resampled (by sherpa-onnx), not refused."""
    import soundfile as sf
    import soxr

    wav = speech_like(2.3, seed=5)
    stereo = soxr.resample(wav, 16000, 22050)[:, None] * [1.0, 0.5]
    sf.write(tmp_path / "a.flac", stereo.astype(np.float32), 22050)
    result = asr_kd_onnx(export_dir, tmp_path / "a.flac")
    assert result.returncode == 0, result.stderr
    text, reference = result.stdout.splitlines()[-1], expected_text(export_dir, wav * 0.75)
    assert text and abs(len(text) - len(reference)) <= 0.3 * len(reference)  # a random model: close


#: Transcribes argv[2] with the export argv[1], prints the peak resident memory (kB) and output size.
PEAK = """
import io, sys
from asr_kd.runtime.cli import transcribe_file
out = io.StringIO()
text = transcribe_file(sys.argv[1], sys.argv[2], out=out)
peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(peak, len(out.getvalue()), len(text))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM")
def test_long_file_streams_in_bounded_memory(export_dir, tmp_path):
    """A 5-minute file takes no more memory than a 5-second one (read piece by piece; sherpa-onnx
    keeps no growing buffer), and its partial lines hold each character once."""
    import soundfile as sf

    peaks = {}
    for seconds in (5, 300):
        path = tmp_path / f"{seconds}.flac"
        with sf.SoundFile(str(path), "w", 16000, 1, subtype="PCM_16") as f:
            for second in range(seconds):
                f.write(speech_like(1.0, seed=second % 7))
        result = subprocess.run([sys.executable, "-c", PEAK, str(export_dir), str(path)], cwd=ROOT,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        peaks[seconds], printed, text = map(int, result.stdout.split())
        assert printed < 3 * text + 2000  # "[  0.50 s] +'...'" per change: linear in the text
    assert peaks[300] - peaks[5] < 10_000  # kB; the whole 5 minutes as float32 would be 19 MB


@pytest.mark.parametrize("case", ["missing", "empty", "not audio", "nan", "flipped graph", "truncated graph"])
def test_transcriber_names_bad_input_in_one_line(export_dir, wav_file, tmp_path, case):
    folder, audio = export_dir, wav_file
    if case == "missing":
        audio = tmp_path / "nothing.wav"
    elif case == "empty":
        save_audio(audio := tmp_path / "empty.wav", np.zeros(0, np.float32), 16000)
    elif case == "not audio":
        (audio := tmp_path / "notes.wav").write_text("not a wav file\n" * 20)
    elif case == "nan":
        import soundfile as sf

        sf.write(audio := tmp_path / "nan.wav", np.full(16000, np.nan, np.float32), 16000, subtype="FLOAT")
    else:
        how = "flip" if case == "flipped graph" else "truncate"
        folder = damaged_export(export_dir, tmp_path / "copy", how)
    result = asr_kd_onnx(folder, audio)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("asr-kd-onnx: ") and result.stderr.count("\n") == 1, result.stderr
    assert {"missing": "no such audio file", "empty": "no audio", "not audio": "not a readable audio",
            "nan": "NaN", "flipped graph": "SHA-256 differs",
            "truncated graph": "SHA-256 differs"}[case] in result.stderr


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


@contextlib.contextmanager
def serving(export_dir: Path, log: Path | None = None):
    """``asr-kd-onnx serve`` (torch unimportable) on a free loopback port: yields (process, port)."""
    with open(log or os.devnull, "w") as stderr:
        server = subprocess.Popen([sys.executable, "-c", NO_TORCH, "serve", str(export_dir), "--port", "0"],
                                  cwd=ROOT, stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        yield server, int(server.stdout.readline().rsplit(":", 1)[1].split("/")[0])
    finally:
        server.terminate()
        server.wait(10)


def test_server_concurrent_streams_and_bad_messages(export_dir, tmp_path):
    with serving(export_dir, tmp_path / "server.log") as (server, port):
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).read().decode()
        assert "getUserMedia" in page and "WebSocket" in page and "const RATE = 16000;" in page
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
    log = (tmp_path / "server.log").read_text()
    assert "Traceback" not in log and log.count("closing a stream") == 3  # one line per bad client


@contextlib.asynccontextmanager
async def in_process(export_dir: Path, **limits):
    """A TranscriptionServer with ``limits`` on a free loopback port, in this event loop."""
    server = TranscriptionServer(export_dir, **limits)
    async with serve(server.handle, "127.0.0.1", 0, process_request=server.process_request,
                     max_queue=4) as ws:
        yield server, ws.sockets[0].getsockname()[1]


def test_server_limits(export_dir):
    """Origin check, connection cap, idle timeout, and a stream that errs while its client keeps
    sending (or drops) leaves no handler behind."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    async def scenario():
        async with in_process(export_dir, max_connections=2, idle_s=1.0,
                              origins=["https://app.example"]) as (server, port):
            url = f"ws://127.0.0.1:{port}/ws"
            with pytest.raises(InvalidStatus, match="403"):
                await connect(url, origin="https://evil.example")
            # the page's own origin, a configured one, a program (no Origin)
            for origin in (f"http://127.0.0.1:{port}", "https://app.example", None):
                async with connect(url, origin=origin) as ws:
                    await ws.send("done")
                    assert json.loads(await ws.recv())["type"] == "final"
            a, b = await connect(url), await connect(url)
            with pytest.raises(InvalidStatus, match="503"):
                await connect(url)
            await a.close()
            await b.send(b"\x00")  # malformed, then keep sending until the server closes
            with contextlib.suppress(Exception):
                for _ in range(1000):
                    await b.send(b"\x00\x00" * 8000)
                    await asyncio.sleep(0)
            idle = await connect(url)
            reply = json.loads(await asyncio.wait_for(idle.recv(), 10))
            assert reply == {"type": "error", "message": "idle for 1 s"}
            for _ in range(100):
                if server.connections == 0:
                    break
                await asyncio.sleep(0.05)
            assert server.connections == 0

    asyncio.run(asyncio.wait_for(scenario(), 60))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_server_stops_cleanly_on_signals(export_dir, tmp_path, sig):
    """A signal while a stream is open closes it and ends the process with status 0, no traceback."""
    from websockets.asyncio.client import connect

    with serving(export_dir, tmp_path / "server.log") as (server, port):
        async def open_stream():
            ws = await connect(f"ws://127.0.0.1:{port}/ws")
            await ws.send(pcm_messages(speech_like(0.5))[0])
            server.send_signal(sig)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.wait_closed(), 10)

        asyncio.run(open_stream())
        assert server.wait(10) == 0
    assert "Traceback" not in (tmp_path / "server.log").read_text()


#: Tones of the browser test and the character each one reads as (see tone_bundle); no whole number
#: of periods in a 10 ms frame shift, so a tone's frames sample every phase.
TONES = {"a": 330.0, "d": 1170.0, "e": 2730.0}


def tone(hz: float, seconds: float, seed: int = 0) -> np.ndarray:
    """A sine with 20 ms fades over a noise floor 50 dB down (``hz=0``: the floor alone), so that no
    mel band is empty: an empty band's log energy is whatever rounding the audio path adds."""
    t = np.arange(int(seconds * 16000)) / 16000
    ramp = np.minimum(1, np.minimum(t, seconds - t) / 0.02)
    noise = np.random.default_rng(seed).normal(0, 0.001, t.size)
    return (0.3 * np.sin(2 * np.pi * hz * t) * ramp + noise).astype(np.float32)


def tone_bundle(folder: Path):
    """A tiny chunked Conformer (run by sherpa-onnx) that reads each tone of TONES as its character
    and anything else as blank, so that its transcript survives what a browser does to the audio (a
    few hundred samples of delay, a round trip through 48 kHz), unlike a random model's. Zeroing the
    residual branches (feed-forward, attention and convolution outputs) leaves a frame-wise model;
    the head scores the cosine between a frame and each tone's mean frame, blank winning below 0.9."""
    bundle = make_bundle(folder, CONFORMER)
    model, seen = bundle.model.eval(), []
    with torch.no_grad():
        for name, p in model.named_parameters():
            if any(f".{b}." in name for b in ("ff1.4", "ff2.4", "attn.out", "conv.pointwise_out")):
                p.zero_()
        hook = model.head.register_forward_hook(lambda _m, args, _out: seen.append(args[0][0]))
        cmvn = bundle.cmvn
        for hz in TONES.values():
            feats = (KaldiFbank()(tone(hz, 1.0)) - cmvn.mean.float()) / cmvn.std.float()
            model(feats[None].float(), torch.tensor([len(feats)]))
        hook.remove()
        model.head.weight.zero_()
        model.head.bias.fill_(-100.0)
        model.head.bias[0] = 0.0
        for char, frames in zip(TONES, seen, strict=True):
            mean = frames[3:-3].mean(0)  # steady frames
            index = bundle.tokenizer.tokens.index(char)
            model.head.weight[index] = mean / mean.norm()
            model.head.bias[index] = -0.9 * mean.norm()
    return bundle


def chromium() -> str:
    """The Chromium binary; a missing one fails the test (ASR_KD_NO_BROWSER=1 skips it instead)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("ASR_KD_NO_BROWSER") == "1":
        pytest.skip("ASR_KD_NO_BROWSER=1: the headless-Chromium test of the web page is skipped")
    pytest.fail("chromium not found: install it (`apt-get install chromium`; `make test` does as root) "
                "or set ASR_KD_NO_BROWSER=1 to skip this test", pytrace=False)


async def watch_page(devtools_port: int, timeout: float) -> list[tuple[str, str]]:
    """Poll the page's #status and #text over the DevTools protocol until "final" or an error."""
    from websockets.asyncio.client import connect

    listing = urllib.request.urlopen(f"http://127.0.0.1:{devtools_port}/json/list", timeout=10).read()
    target = next(t["webSocketDebuggerUrl"] for t in json.loads(listing) if t["type"] == "page")
    # '' while the page loads
    expression = "['status', 'text'].map((id) => document.getElementById(id)?.textContent ?? '')"
    seen, deadline = [], time.monotonic() + timeout
    async with connect(target, max_size=None) as ws:
        for call in range(1, 10**6):
            await ws.send(json.dumps({"id": call, "method": "Runtime.evaluate",
                                      "params": {"expression": expression, "returnByValue": True}}))
            while (reply := json.loads(await ws.recv())).get("id") != call:
                pass
            seen.append(tuple(reply["result"]["result"]["value"]))
            if seen[-1][0] == "final" or seen[-1][0].startswith("error") or time.monotonic() > deadline:
                return seen
            await asyncio.sleep(0.1)
    return seen


def run_page(binary: str, url: str, wav: Path, timeout: float = 60) -> list[tuple[str, str]]:
    """Open ``url`` in headless Chromium with ``wav`` as the microphone; the (status, text) it showed."""
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        command = [binary, "--headless=new", "--no-sandbox", "--disable-gpu",
                   "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                   f"--use-file-for-fake-audio-capture={wav}%noloop",  # then silence
                   "--autoplay-policy=no-user-gesture-required",
                   "--disable-background-networking", "--disable-component-update", "--disable-sync",
                   "--no-first-run", "--disable-quic", f"--user-data-dir={profile}",
                   "--remote-debugging-port=0", url]
        browser = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                   start_new_session=True)  # its own process group, ended as one
        try:
            port_file, start = Path(profile) / "DevToolsActivePort", time.monotonic()
            while not (port_file.exists() and port_file.read_text().count("\n")):
                if browser.poll() is not None or time.monotonic() - start > 30:
                    os.killpg(browser.pid, signal.SIGKILL)
                    pytest.fail(f"chromium did not start: {browser.communicate()[1][-2000:]}")
                time.sleep(0.05)
            port = int(port_file.read_text().split()[0])
            return asyncio.run(asyncio.wait_for(watch_page(port, timeout), timeout + 10))
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(browser.pid, signal.SIGKILL)
            browser.communicate(timeout=10)


def test_web_page_in_headless_chromium(tmp_path):
    """The served page, autostarted, captures a WAV file through Chromium's fake microphone (which
    delays it and resamples it to the page's 16 kHz AudioContext), streams it to the server and shows
    partials, then the final text: the Python runtime's transcript of the same file."""
    binary = chromium()
    export_bundle(tone_bundle(tmp_path), tmp_path / "onnx", int8=False)
    a, d, e, gap = TONES["a"], TONES["d"], TONES["e"], 0.0
    pieces = (gap, a, gap, e, gap, d, a, gap, d, gap)
    wav = np.concatenate([tone(hz, 0.4 if hz else 0.2, seed) for seed, hz in enumerate(pieces)])
    save_audio(tmp_path / "mic.wav", wav, 16000)
    expected = expected_text(tmp_path / "onnx", wav)
    assert expected == "aedad"
    with serving(tmp_path / "onnx") as (_, port):
        url = f"http://127.0.0.1:{port}/?autostart=1&seconds={len(wav) / 16000}"
        seen = run_page(binary, url, tmp_path / "mic.wav")
    assert seen[-1] == ("final", expected), seen[-5:]
    assert any(status.startswith("listening (") and text for status, text in seen)  # live partials
