"""asr_kd.data.audio: every format, rate and channel count loads as mono at the training rate; every
kind of broken file is an AudioError naming the file."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import soundfile as sf
from audio_fixtures import BROKEN, FORMATS, SR, tone

from asr_kd.data.audio import AudioError, load_audio, read_span, save_audio, speed_perturb, stream_audio


@pytest.mark.parametrize("ext,subtype", FORMATS)
@pytest.mark.parametrize("sr,channels", [(8000, 1), (22050, 2), (44100, 1), (16000, 6), (48000, 2)])
def test_any_format_rate_and_channel_count_loads_as_mono_at_the_training_rate(
    tmp_path, ext, subtype, sr, channels
):
    path = tmp_path / f"a.{ext}"
    sf.write(path, tone(0.5, sr, channels), sr, subtype=subtype)
    wav = load_audio(path, SR)
    assert wav.ndim == 1 and wav.dtype == np.float32 and wav.flags["C_CONTIGUOUS"]
    assert abs(len(wav) - SR * 0.5) <= 2
    assert 0.2 < np.abs(wav).max() < 0.4  # the mono mix of identical channels keeps the level


def test_channels_are_averaged(tmp_path):
    stereo = np.stack([tone(0.5, SR), np.zeros(SR // 2, np.float32)], axis=1)
    sf.write(tmp_path / "s.wav", stereo, SR, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(tmp_path / "s.wav", SR), stereo[:, 0] / 2, atol=1e-6)


def test_resampling_keeps_the_frequency(tmp_path):
    sf.write(tmp_path / "a.wav", tone(1.0, 8000, freq=1000.0), 8000)
    wav = load_audio(tmp_path / "a.wav", SR)
    peak_hz = np.argmax(np.abs(np.fft.rfft(wav))) * SR / len(wav)
    assert len(wav) == SR and abs(peak_hz - 1000) < 2


def test_a_span_is_read_at_the_native_rate_then_resampled(tmp_path):
    ramp = np.linspace(-0.5, 0.5, 8000, dtype=np.float32)
    sf.write(tmp_path / "r.flac", ramp, 8000, subtype="PCM_24")
    samples, rate = read_span(tmp_path / "r.flac", 0.25, 0.5)
    assert rate == 8000 and samples.shape == (2000, 1)
    np.testing.assert_allclose(samples[:, 0], ramp[2000:4000], atol=1e-6)
    assert len(load_audio(tmp_path / "r.flac", SR, 0.25, 0.5)) == 4000
    assert len(load_audio(tmp_path / "r.flac", SR, 0.5, 5.0)) == 8000  # an end past the file stops there


REASON = {
    "missing": "does not exist",
    "garbage bytes": "unreadable audio",
    "empty file": "empty file",
    "truncated wav": "truncated audio",
    "truncated flac": "unreadable audio",
    "zero length": "no audio samples",
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_file_is_an_audio_error_naming_it(tmp_path, case):
    path = BROKEN[case](tmp_path)
    with pytest.raises(AudioError, match=REASON[case]) as info:
        load_audio(path, SR)
    assert str(info.value).startswith(f"{path}: ")


def test_a_span_past_the_end_is_an_error(tmp_path):
    sf.write(tmp_path / "a.wav", tone(1.0, SR), SR)
    with pytest.raises(AudioError, match=r"a.wav: no audio samples in \[2.0, 3.0\) s"):
        load_audio(tmp_path / "a.wav", SR, 2.0, 3.0)


@pytest.mark.parametrize("factor", [0.9, 1.0, 1.1])
def test_speed_perturbation_changes_the_duration_by_the_factor(factor):
    wav = tone(2.0, SR, freq=500.0)
    fast = speed_perturb(wav, factor, SR)
    assert abs(len(fast) - len(wav) / factor) <= 1
    peak_hz = np.argmax(np.abs(np.fft.rfft(fast))) * SR / len(fast)
    assert abs(peak_hz - 500 * factor) < 2  # the pitch moves with the speed, as with `sox speed`


@pytest.mark.parametrize("suffix,fmt", [(".wav", "WAV"), (".flac", "FLAC")])
def test_save_audio_writes_16_bit_pcm_in_the_suffix_format(tmp_path, suffix, fmt):
    save_audio(tmp_path / f"x{suffix}", tone(0.25, SR), SR)
    info = sf.info(tmp_path / f"x{suffix}")
    assert (info.format, info.subtype, info.samplerate, info.frames) == (fmt, "PCM_16", SR, SR // 4)
    assert [p.name for p in tmp_path.iterdir()] == [f"x{suffix}"]  # no temporary file left


@pytest.mark.parametrize("rate", [8000, 44100])
def test_streamed_blocks_are_the_whole_file_read_in_bounded_memory(tmp_path, rate):
    path = tmp_path / "long.flac"
    sf.write(path, tone(120, rate, channels=2) * 0.5, rate)  # 2 minutes: 7.7 MB as float32 at 16 kHz
    whole = load_audio(path)
    tracemalloc.start()
    try:
        blocks = [len(block) for block in stream_audio(path, block_s=2.0)]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3e6 and len(blocks) == 60, f"{peak / 1e6:.1f} MB, {len(blocks)} blocks"
    np.testing.assert_allclose(np.concatenate(list(stream_audio(path, block_s=2.0))), whole, atol=1e-6)


def test_nan_samples_are_an_audio_error_naming_file_and_time(tmp_path):
    wav = tone(2.0)
    wav[24000] = np.inf
    sf.write(tmp_path / "bad.wav", wav, SR, subtype="FLOAT")
    for read in (load_audio, lambda p: list(stream_audio(p, block_s=0.5))):
        with pytest.raises(AudioError, match=r"bad.wav: NaN or infinite samples \(1, the first at 1.50 s\)"):
            read(tmp_path / "bad.wav")
