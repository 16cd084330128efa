"""Front ends and feature store: Kaldi framing for every backend, store round trip, checksums,
CMVN; the features stage refuses non-finite features and redoes every split under force=true."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hydra import compose, initialize_config_dir

from asr_kd.data.manifest import Utterance, write_manifest
from asr_kd.errors import ChecksumError, DataError
from asr_kd.features.cmvn import CMVNAccumulator
from asr_kd.features.frontend import KaldiFbank, LibrosaLogMel
from asr_kd.features.store import FeatureStore, FeatureWriter
from asr_kd.paths import ExpPaths
from asr_kd.stages import features
from asr_kd.stages.base import StageStamp

CONF = str(Path(__file__).resolve().parents[2] / "conf")


@pytest.mark.parametrize("frontend", [KaldiFbank(), LibrosaLogMel()])
@pytest.mark.parametrize("samples", [399, 400, 559, 560, 16000])
def test_backends_frame_like_kaldi(frontend, samples):
    feats = frontend(np.random.default_rng(0).normal(0, 0.1, samples).astype(np.float32))
    assert feats.shape == (frontend.num_frames(samples), 80)
    assert frontend.num_frames(samples) == (0 if samples < 400 else 1 + (samples - 400) // 160)


def test_piecewise_fbank_equals_whole_file():
    """What the streaming recognizer relies on: frames computed from a suffix match the whole."""
    fb = KaldiFbank()
    wav = np.random.default_rng(1).normal(0, 0.1, 8000).astype(np.float32)
    whole = fb(wav)
    part = fb(wav[160 * 10 :])
    assert torch.allclose(whole[10:], part, atol=1e-4)


def test_store_round_trip_and_size_check(tmp_path):
    rng = np.random.default_rng(0)
    writer = FeatureWriter(tmp_path, 4, {"backend": "x"})
    feats = {f"u{i}": rng.normal(size=(5 + i, 4)).astype(np.float32) for i in range(3)}
    for k, v in feats.items():
        writer.add(k, v, "sha")
    writer.close()
    store = FeatureStore(tmp_path)
    for k, v in feats.items():
        np.testing.assert_allclose(store[k], v, atol=1e-2)
    (tmp_path / "feats.f16").write_bytes(b"\0" * 10)
    with pytest.raises(ValueError, match="feats.f16: 10 bytes, index expects"):
        FeatureStore(tmp_path)


def test_store_with_flipped_bytes_is_refused_by_its_checksum(tmp_path):
    writer = FeatureWriter(tmp_path, 4, {})
    writer.add("u", np.ones((300, 4), np.float32), "sha")
    writer.close()
    FeatureStore(tmp_path)
    data = bytearray((tmp_path / "feats.f16").read_bytes())
    data[800:1200] = bytes(400)  # same size: only the checksum can tell
    (tmp_path / "feats.f16").write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match=r"feats.f16: checksum mismatch .*stage=features force=true"):
        FeatureStore(tmp_path)


def _features_exp(root: Path, wavs: dict[str, np.ndarray], *overrides: str):
    """An exp_dir whose prepare stage is done, with a train split of ``wavs`` (float WAVs at 16 kHz)."""
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("config", overrides=[f"exp_dir={root}", "features.num_workers=0", *overrides])
    utts = []
    for name, wav in wavs.items():
        sf.write(root / f"{name}.wav", wav, 16000, subtype="FLOAT")
        utts.append(Utterance(name, str(root / f"{name}.wav"), len(wav) / 16000, "a"))
    write_manifest(ExpPaths(root).manifest("train"), utts)
    StageStamp(cfg, "prepare").done()
    return cfg


def test_non_finite_features_are_refused_and_nothing_is_written(tmp_path):
    bad = np.full(8000, 0.1, np.float32)
    bad[4000:4400] = 3e38  # finite samples (NaN ones are refused at load) whose power overflows
    cfg = _features_exp(tmp_path, {"good": np.full(8000, 0.1, np.float32), "bad": bad})
    with pytest.raises(DataError, match=r"^bad \(.*bad.wav\): non-finite features"):
        features.run(cfg)
    assert not (tmp_path / "features/train/index.json").exists()


def test_force_re_extracts_every_split(tmp_path):
    cfg = _features_exp(tmp_path, {"a": 0.1 * np.sin(np.arange(8000, dtype=np.float32))})
    features.run(cfg)
    feats = tmp_path / "features/train/feats.f16"
    good = feats.read_bytes()
    feats.write_bytes(bytes(len(good)))  # damaged, its checksum gone with it
    Path(f"{feats}.sha256").unlink()
    features.run(cfg)  # up to date: nothing redone
    assert feats.read_bytes() != good
    cfg.force = True
    features.run(cfg)
    assert feats.read_bytes() == good


def test_aborted_writer_leaves_no_store(tmp_path):
    writer = FeatureWriter(tmp_path, 4, {})
    writer.add("u", np.zeros((3, 4), np.float32), "sha")
    writer.abort()
    assert not any(tmp_path.iterdir())
    with pytest.raises(FileNotFoundError, match="run `asr-kd stage=features` first"):
        FeatureStore(tmp_path)


def test_cmvn_normalises_to_zero_mean_unit_variance():
    rng = np.random.default_rng(0)
    acc = CMVNAccumulator(3)
    chunks = [rng.normal(5, 2, size=(100, 3)) for _ in range(4)]
    for c in chunks:
        acc.update(c)
    out = acc.finalize()(torch.tensor(np.concatenate(chunks), dtype=torch.float32))
    assert torch.allclose(out.mean(0), torch.zeros(3), atol=1e-4)
    assert torch.allclose(out.std(0, unbiased=False), torch.ones(3), atol=1e-3)


def test_a_damaged_index_is_a_one_line_error_naming_it(tmp_path):
    writer = FeatureWriter(tmp_path, 4, {"backend": "KaldiFbank"})
    writer.add("a", np.zeros((3, 4), np.float32), "sha")
    writer.close()
    index = tmp_path / "index.json"
    index.write_text(index.read_text()[:30])  # cut off, as by a full disk or a killed copy
    with pytest.raises(DataError, match=f"{index}: checksum mismatch"):
        FeatureStore(tmp_path)
    Path(f"{index}.sha256").unlink()  # a store from before checksums: the JSON itself is named
    with pytest.raises(DataError, match=f"{index}: not valid JSON .*delete it and re-run"):
        FeatureStore(tmp_path)
