"""stage=transcribe: prints partial results then the streaming recognizer's text; offline models work;
it is a stage of its own, not part of stage=all."""

import os
import shutil
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hydra import compose, initialize_config_dir

from asr_kd.config import instantiate
from asr_kd.data.audio import AudioError, load_audio, save_audio
from asr_kd.data.tokenizer import CharTokenizer
from asr_kd.decoding.offline import OfflineRecognizer
from asr_kd.decoding.streaming import StreamingRecognizer
from asr_kd.errors import ChecksumError, UnsafeFileError
from asr_kd.features.cmvn import GlobalCMVN
from asr_kd.features.frontend import KaldiFbank
from asr_kd.integrity import checksum_path
from asr_kd.models.bundle import load_bundle, save_bundle
from asr_kd.paths import ExpPaths
from asr_kd.stages import PIPELINE, STAGES, get_stage
from asr_kd.stages.teacher import adopt_checkpoint
from asr_kd.stages.transcribe import run

ROOT = str(Path(__file__).resolve().parents[2])
CONF = str(Path(ROOT) / "conf")
MODELS = {
    "student_kd": {"_target_": "asr_kd.models.student.EmformerCTC", "input_dim": 80, "d_model": 32,
                   "num_heads": 2, "ffn_dim": 64, "num_layers": 2, "chunk_frames": 4,
                   "left_context_frames": 8, "right_context_frames": 1},
    "teacher": {"_target_": "asr_kd.models.teacher.ConformerCTC", "input_dim": 80, "d_model": 32,
                "num_heads": 2, "ffn_dim": 64, "num_layers": 1, "conv_kernel_size": 3},
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def exp(tmp_path_factory):
    """An exp_dir with a tiny student and teacher, and a 1.2 s wav at 8 kHz (resampled on load)."""
    root = tmp_path_factory.mktemp("exp")
    paths = ExpPaths(root)
    tokenizer = CharTokenizer.from_texts(["abc de"])
    for i, (system, config) in enumerate(MODELS.items()):
        torch.manual_seed(i)
        model = instantiate(config, vocab_size=len(tokenizer))
        with torch.no_grad():
            model.head.bias.copy_(torch.linspace(-1, 1, len(tokenizer)))
        save_bundle(paths.checkpoint(system), model, config, tokenizer, KaldiFbank().config(),
                    GlobalCMVN(np.full(80, 10.0), np.full(80, 3.0)))
    t = np.arange(int(1.2 * 8000)) / 8000
    wav = (0.3 * np.sin(2 * np.pi * 300 * t) * (1 + np.sin(9 * t))).astype(np.float32)
    save_audio(root / "a.wav", wav, 8000)
    return root


def config(exp, *overrides):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose("config", overrides=[f"exp_dir={exp}", f"audio={exp / 'a.wav'}", *overrides])


def test_streaming_transcript_with_partials(exp, capsys):
    text = run(config(exp, "stage=transcribe", "transcribe.piece_ms=50"))
    lines = capsys.readouterr().out.splitlines()
    rec = StreamingRecognizer(load_bundle(ExpPaths(exp).checkpoint("student_kd")))
    rec.accept_waveform(load_audio(exp / "a.wav"))
    assert text == rec.finalize() and text
    assert lines[-1] == text
    partials = [line.split("] ", 1) for line in lines[:-1]]
    assert len(partials) > 1 and "".join(p[1] for p in partials) == text  # each line adds to the last
    times = [float(p[0].strip("[ s")) for p in partials]
    assert times == sorted(times) and times[-1] <= 1.2


def test_offline_model_and_model_path(exp, capsys):
    text = run(config(exp, "model=teacher"))
    expected = OfflineRecognizer(load_bundle(ExpPaths(exp).checkpoint("teacher")))(load_audio(exp / "a.wav"))
    assert text == expected and capsys.readouterr().out.splitlines() == [text]
    # A checkpoint path needs no exp_dir; streaming=false decodes a student with its chunk-masked
    # forward, which gives the streamed text.
    path = ExpPaths(exp).checkpoint("student_kd")
    offline = run(config(exp, f"model={path}", "transcribe.streaming=false", "exp_dir=/nonexistent"))
    assert offline == run(config(exp, f"model={path}", "transcribe.piece_ms=10")) != ""


def test_missing_inputs_are_explained(exp):
    with pytest.raises(FileNotFoundError, match="no model 'student_big'"):
        run(config(exp, "model=student_big"))
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("config", overrides=[f"exp_dir={exp}"])
    with pytest.raises(ValueError, match="needs audio=FILE"):
        run(cfg)


def _one_line_naming(error: Exception, path: Path) -> bool:
    return str(error).startswith(f"{path}: ") and "\n" not in str(error)


def test_a_model_that_would_run_code_is_refused(exp, tmp_path, code_payload):
    payload, marker = code_payload
    hostile = tmp_path / "hostile.pt"
    torch.save({"state_dict": payload}, hostile)
    genuine = torch.load(ExpPaths(exp).checkpoint("student_kd"), weights_only=True)
    hidden = tmp_path / "model.pt"  # a bundle that works, with the payload in its meta
    torch.save({**genuine, "meta": {"note": payload}}, hidden)
    for path in (hostile, hidden):
        with pytest.raises(UnsafeFileError, match="refusing to load: it holds Python objects") as e:
            run(config(exp, f"model={path}"))
        assert _one_line_naming(e.value, path)
    with pytest.raises(UnsafeFileError):  # teacher.checkpoint=FILE: nothing is copied in
        adopt_checkpoint(str(hidden), ExpPaths(tmp_path / "exp"), CharTokenizer.from_texts(["abc de"]), {})
    assert not marker.exists() and not ExpPaths(tmp_path / "exp").checkpoint("teacher").exists()


def test_a_corrupted_model_is_refused_by_its_checksum(exp, tmp_path):
    source = ExpPaths(exp).checkpoint("student_kd")
    path = tmp_path / "model.pt"
    shutil.copy(source, path)
    shutil.copy(checksum_path(source), checksum_path(path))  # the sidecar travels with the file
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 256] = bytes(256)  # 256 bytes of bit rot in the weights
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="checksum mismatch with model.pt.sha256") as e:
        run(config(exp, f"model={path}"))
    assert _one_line_naming(e.value, path)


def test_transcribe_is_a_stage_but_not_in_the_pipeline():
    assert "transcribe" in STAGES and "transcribe" not in PIPELINE
    assert get_stage("transcribe") is run


def test_the_cli_writes_nothing_and_needs_no_exp_dir(exp, tmp_path):
    blocked = tmp_path / "exp_is_a_file"
    blocked.write_text("")
    model = ExpPaths(exp).checkpoint("student_kd")
    cmd = [sys.executable, "-m", "asr_kd.cli", "stage=transcribe", f"model={model}", f"audio={exp / 'a.wav'}",
           f"exp_dir={blocked}"]
    env = {**os.environ, "PYTHONPATH": ROOT}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines()[-1] == run(config(exp, f"model={model}"))  # logs go to stderr
    assert "asr_kd.stages.transcribe" in proc.stderr and "INFO" not in proc.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp_is_a_file"] and not blocked.read_text()


def test_nan_audio_is_a_one_line_error(exp, tmp_path):
    wav = np.full(16000, 0.1, dtype=np.float32)
    wav[8000] = np.nan
    sf.write(tmp_path / "nan.wav", wav, 16000, subtype="FLOAT")
    for streaming in ("true", "false"):
        with pytest.raises(AudioError, match=r"nan.wav: NaN or infinite samples \(1, the first at 0.50 s\)"):
            run(config(exp, f"audio={tmp_path / 'nan.wav'}", f"transcribe.streaming={streaming}"))


def test_long_audio_streams_from_disk_in_bounded_memory(exp, tmp_path, capsys):
    """A minute costs no more memory than six seconds (read whole, it would add 3.4 MB of samples)."""
    peaks = {}
    for seconds in (6, 60):
        t = np.arange(seconds * 16000) / 16000
        wav = (0.3 * np.sin(2 * np.pi * 300 * t) * (1 + np.sin(9 * t))).astype(np.float32)
        sf.write(tmp_path / f"{seconds}.wav", wav, 16000, subtype="PCM_16")
        del t, wav
        capsys.readouterr()
        tracemalloc.start()
        try:
            text = run(config(exp, f"audio={tmp_path / f'{seconds}.wav'}", "transcribe.piece_ms=1000"))
            peaks[seconds] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    peak = peaks[60] - peaks[6]
    assert peak < 1e6, f"{peak / 1e6:.1f} MB more for a minute than for 6 s"
    out = capsys.readouterr().out
    assert out.endswith(text + "\n") and len(out) < 2 * len(text) + 20 * 60  # partials do not reprint
