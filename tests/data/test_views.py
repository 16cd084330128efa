"""Augmented views and cross-fitting folds: noisy copies are reproducible and at their drawn SNR,
views map back to their clip, folds are disjoint by speaker, balanced and deterministic."""

from __future__ import annotations

import re

import numpy as np
import pytest
import soundfile as sf

from asr_kd.data.audio import load_audio
from asr_kd.data.folds import assign_folds, fold_of
from asr_kd.data.manifest import Utterance
from asr_kd.data.views import add_noise, drawn_snr, make_views, source_id, view_settings
from asr_kd.errors import ConfigError, DataError

SR = 16000
NOISE = {"copies": 2, "snr_db": [5.0, 20.0], "seed": 0, "files": None}


def speech_like(seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    """A clip with the dynamics of speech: a few tones under a syllable-rate envelope."""
    t = np.arange(round(seconds * SR)) / SR
    rng = np.random.default_rng(seed)
    wav = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in (180, 360, 720, 1500))
    return (0.1 * wav * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))).astype(np.float32)


def measured_snr(noisy: np.ndarray, clean: np.ndarray) -> float:
    """SNR of ``noisy`` against ``clean`` (the clean part found by projection: the copy may have been
    scaled down as a whole to avoid clipping)."""
    scale = float(noisy @ clean / (clean @ clean))
    noise = noisy - scale * clean
    return 10 * np.log10(np.sum((scale * clean) ** 2) / np.sum(noise**2))


def clips(root, n: int = 3) -> list[Utterance]:
    utts = []
    for i in range(n):
        path = root / f"c{i}.wav"
        sf.write(path, speech_like(0.5 + 0.25 * i, seed=i), SR)
        utts.append(Utterance(f"spk{i}-{i}", str(path), 0.5 + 0.25 * i, "hello", f"spk{i}"))
    return utts


def test_noisy_copy_is_reproducible_and_at_the_drawn_snr():
    clean = speech_like()
    noisy = add_noise(clean, "u1_nz1", NOISE, SR)
    assert np.array_equal(noisy, add_noise(clean, "u1_nz1", NOISE, SR))  # same id, same copy
    assert not np.array_equal(noisy, add_noise(clean, "u1_nz2", NOISE, SR))
    for view in ("u1_nz1", "u1_nz2", "u2_nz1", "u3_nz1"):
        snr = drawn_snr(view, NOISE)
        assert 5.0 <= snr <= 20.0
        assert measured_snr(add_noise(clean, view, NOISE, SR), clean) == pytest.approx(snr, abs=0.5)
    assert drawn_snr("u1_nz1", {**NOISE, "seed": 1}) != drawn_snr("u1_nz1", NOISE)


def test_noise_from_files_is_an_excerpt_at_the_drawn_snr(tmp_path):
    folder = tmp_path / "noise"
    folder.mkdir()
    sf.write(folder / "hum.wav", 0.3 * np.random.default_rng(0).standard_normal(3 * SR), SR)
    noise = {**NOISE, "files": str(folder)}
    settings = view_settings({"speed_perturb": [], "noise": noise})
    clean = speech_like()
    noisy = add_noise(clean, "u1_nz1", settings["noise"], SR, sorted(folder.glob("*.wav")))
    assert measured_snr(noisy, clean) == pytest.approx(drawn_snr("u1_nz1", noise), abs=0.5)


def test_written_views_are_reproducible_at_their_snr_and_reused(tmp_path):
    utts = clips(tmp_path)
    views = view_settings({"speed_perturb": [1.0, 1.1], "noise": NOISE})
    assert views == {"speed_perturb": [1.1], "noise": NOISE}
    copies = make_views(utts, views, tmp_path / "views", SR, num_workers=1)
    kinds = ("_sp1.1", "_nz1", "_nz2")
    assert sorted(c.id for c in copies) == sorted(f"spk{i}-{i}{v}" for i in range(3) for v in kinds)
    assert {source_id(c.id) for c in copies} == {u.id for u in utts}
    by_id = {u.id: u for u in utts}
    for copy in (c for c in copies if "_nz" in c.id):
        clean = load_audio(by_id[source_id(copy.id)].audio, SR)
        snr = drawn_snr(copy.id, NOISE)
        assert measured_snr(load_audio(copy.audio, SR), clean) == pytest.approx(snr, abs=0.5)
    before = {c.audio: sf.read(c.audio)[0] for c in copies}
    for c in make_views(utts, views, tmp_path / "views", SR, num_workers=1):  # reused, the same files
        assert np.array_equal(sf.read(c.audio)[0], before[c.audio])
    other = make_views(utts, view_settings({"noise": {**NOISE, "seed": 1}}), tmp_path / "views", SR)
    assert not {c.audio for c in other} & set(before)  # other settings, other files


def test_source_id_strips_one_view_suffix():
    assert source_id("s1-0001_sp0.9") == source_id("s1-0001_nz12") == source_id("s1-0001") == "s1-0001"
    assert source_id("a_b_sp1.1") == "a_b" and source_id("take_spin") == "take_spin"


@pytest.mark.parametrize("noise, message", [
    ({**NOISE, "snr_db": [20, 5]}, "data.noise.snr_db must be [low, high]"),
    ({**NOISE, "copies": -1}, "data.noise.copies must be a whole number"),
    ({**NOISE, "files": "/nonexistent"}, "data.noise.files=/nonexistent: no .wav/.flac/.ogg file"),
])
def test_bad_noise_settings_are_one_line_errors(noise, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        view_settings({"noise": noise})
    assert "\n" not in str(info.value)


def corpus(speakers: int, per_speaker: int) -> list[Utterance]:
    return [Utterance(f"s{s}-{u}", f"/x/s{s}-{u}.wav", 1.0 + s % 3 + 0.1 * u, "a", f"s{s}")
            for s in range(speakers) for u in range(per_speaker)]


def test_folds_split_speakers_evenly_and_deterministically():
    utts = corpus(speakers=10, per_speaker=4)
    views = [Utterance(f"{u.id}{v}", u.audio, u.duration, u.text, u.speaker)
             for u in utts for v in ("_sp0.9", "_nz1")]
    folds = assign_folds(utts + views, 3)
    assert folds["by"] == "speaker" and set(folds["fold_of"]) == {u.id for u in utts}  # clips only
    speaker_folds = {}
    for u in utts:
        speaker_folds.setdefault(u.speaker, set()).add(fold_of(folds, u.id))
    assert all(len(f) == 1 for f in speaker_folds.values())  # each speaker in one fold: disjoint
    assert {f for (f,) in speaker_folds.values()} == {1, 2, 3}
    largest = max(sum(u.duration for u in utts if u.speaker == s) for s in speaker_folds)
    assert max(folds["hours"]) - min(folds["hours"]) <= largest / 3600  # balanced to within one speaker
    for v in views:  # views follow their clip
        assert fold_of(folds, v.id) == fold_of(folds, source_id(v.id))
    shuffled = list(reversed(utts + views))
    assert assign_folds(shuffled, 3) == folds
    assert fold_of(folds, "dev-1") is None


def test_folds_without_speakers_go_by_utterance():
    utts = [Utterance(f"u{i}", f"/x/{i}.wav", 1.0, "a") for i in range(40)]
    folds = assign_folds(utts, 4)
    assert folds["by"] == "utterance" and set(folds["fold_of"].values()) == {1, 2, 3, 4}
    assert assign_folds(utts[::-1], 4) == folds
    with pytest.raises(DataError, match="3 train clip\\(s\\) cannot make 4 cross-fitting folds"):
        assign_folds(utts[:3], 4)


def test_a_view_is_never_written_outside_its_folder(tmp_path):
    utt = clips(tmp_path)[0]
    hostile = Utterance("../../escaped", utt.audio, utt.duration, utt.text)  # e.g. a manifest read elsewhere
    with pytest.raises(DataError, match="refusing to write outside"):
        make_views([hostile], view_settings({"speed_perturb": [1.1]}), tmp_path / "exp" / "views", SR)
    assert not list(tmp_path.rglob("*escaped*"))
