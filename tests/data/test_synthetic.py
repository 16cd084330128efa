"""The embedded espeak-ng corpus: deterministic, disjoint splits, unseen voices, resumable, and an
untranscribed split of new sentences that leaves the labelled ones as they were; stage prepare
records one corpus hash whatever the number of workers that render it."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from asr_kd.data.manifest import corpus_hash, read_manifest
from asr_kd.data.synthetic import _sentences, _unlabeled_sentences, make_synthetic_corpus
from asr_kd.data.synthetic.grammar import command_vocabulary, number_words
from asr_kd.data.synthetic.open_english import open_english_sentences
from asr_kd.paths import ExpPaths
from asr_kd.scoring.text import normalize_text
from asr_kd.stages import prepare
from asr_kd.stages.prepare import PREPARE_KEYS
from asr_kd.utils import read_json

CONF = str(Path(__file__).resolve().parents[2] / "conf")


def _yaml_settings() -> dict:
    """The corpus settings of conf/data/synthetic.yaml (resolved), without prepare's own keys."""
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        data = OmegaConf.to_container(compose("config", overrides=["data=synthetic"]).data, resolve=True)
    return {k: v for k, v in data.items() if k not in ("_target_", *PREPARE_KEYS)}


SMALL = {**_yaml_settings(), "num_train": 24, "num_dev": 4, "num_test": 6, "num_unlabeled": 12,
         "seen_speakers": 5, "unseen_speakers": 2, "unlabeled_speakers": 3, "num_workers": 1}
SMALL.pop("seed")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    work = tmp_path_factory.mktemp("synthetic")
    return work, make_synthetic_corpus(work, seed=3, **SMALL)


def test_splits_sizes_and_audio(corpus):
    _, splits = corpus
    sizes = {"train": 24, "dev": 4, "test_seen": 6, "test_unseen": 6, "unlabeled": 12}
    assert {k: len(v) for k, v in splits.items()} == sizes
    for utt in splits["test_seen"]:
        wav, sr = sf.read(utt.audio, dtype="float32")
        assert sr == 16000 and wav.ndim == 1
        assert utt.duration == pytest.approx(len(wav) / sr)
        assert 0.05 < np.abs(wav).max() <= 1.0  # speech, not silence, not clipped beyond full scale
        assert utt.text == normalize_text(utt.text)  # transcripts are already in scoring form


def variant(utt) -> str:
    """The espeak-ng voice variant of an utterance's speaker id (``accent+variant-rNN``)."""
    return utt.speaker.split("+")[1].rsplit("-", 1)[0]


def test_no_test_sentence_in_training_and_unseen_voices(corpus):
    _, splits = corpus
    train_text = {u.text for u in splits["train"]}
    for split in ("dev", "test_seen", "test_unseen"):
        assert not train_text & {u.text for u in splits[split]}, split

    train_variants = {variant(u) for u in splits["train"]}
    assert {variant(u) for u in splits["test_seen"]} <= train_variants
    assert not {variant(u) for u in splits["test_unseen"]} & train_variants


def test_unlabeled_split_is_untranscribed_on_seen_variants_and_leaves_the_others_alone(corpus):
    work, splits = corpus
    unlabeled = splits["unlabeled"]
    assert all(u.text is None for u in unlabeled)
    labelled_audio = {u.audio for split, utts in splits.items() if split != "unlabeled" for u in utts}
    assert not {u.audio for u in unlabeled} & labelled_audio
    info = json.loads((work / "synthetic" / "corpus.json").read_text())
    assert len(info["speakers"]["unlabeled"]) == 3 and info["held_out_variants"]
    assert not {variant(u) for u in unlabeled} & set(info["held_out_variants"])
    assert not {variant(u) for u in splits["train"]} & set(info["held_out_variants"])
    assert {u.speaker for u in unlabeled} - {u.speaker for u in splits["train"]}  # further voices
    # the labelled splits do not depend on the unlabeled one: the same utterances and wavs without it
    without = make_synthetic_corpus(work, seed=3, **{**SMALL, "num_unlabeled": 0})
    assert without == {k: v for k, v in splits.items() if k != "unlabeled"}


@pytest.mark.parametrize("domain", ["commands", "open_english"])
def test_unlabeled_sentences_are_new_and_never_held_out(domain):
    labelled = _sentences(domain, random.Random(0), num_train=3000, num_dev=150, num_test=200)
    held_out = {s for split in ("dev", "test_seen", "test_unseen") for s in labelled[split]}
    train = set(labelled["train"])
    unlabeled = _unlabeled_sentences(domain, random.Random(1), labelled, 2400)
    assert len(unlabeled) == 2400 and not set(unlabeled) & held_out
    if domain == "commands":  # the grammar has sentences to spare: all new, all distinct
        assert len(set(unlabeled)) == 2400 and not set(unlabeled) & train
    else:  # ~3,950 sentences in all: the ~400 left over, then train ones again
        new = set(unlabeled) - train
        assert 0 < len(new) < 2400 and set(unlabeled[: len(new)]) == new


def test_deterministic_and_resumable(corpus, tmp_path):
    work, splits = corpus
    stamps = {u.audio: os.stat(u.audio).st_mtime_ns for u in splits["train"]}
    again = make_synthetic_corpus(work, seed=3, **SMALL)
    assert again == splits  # same texts, speakers, file names
    assert {u.audio: os.stat(u.audio).st_mtime_ns for u in again["train"]} == stamps  # re-used, not redone
    # a fresh directory with two worker processes renders byte-identical audio
    fresh = make_synthetic_corpus(tmp_path, seed=3, **{**SMALL, "num_workers": 2})
    first, other = splits["dev"][0], fresh["dev"][0]
    assert Path(first.audio).read_bytes() == Path(other.audio).read_bytes()
    # another seed gives other sentences and other files, never the stale ones
    reseeded = make_synthetic_corpus(work, seed=4, **SMALL)
    assert {u.audio for u in reseeded["train"]}.isdisjoint(stamps)


def test_grammar_words():
    assert number_words(0) == "zero"
    assert number_words(42) == "forty two"
    assert number_words(305) == "three hundred five"
    with pytest.raises(ValueError):
        number_words(1000)
    assert 250 <= len(command_vocabulary()) <= 600  # "a few hundred words"


def test_open_english_has_a_large_vocabulary():
    sentences = open_english_sentences()
    vocabulary = {w for s in sentences for w in s.split()}
    assert len(sentences) > 3000 and len(vocabulary) >= 2000
    assert all(s == normalize_text(s) for s in sentences[:500])


def test_unknown_domain_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown synthetic domain 'poetry'"):
        make_synthetic_corpus(tmp_path, seed=0, **{**SMALL, "domain": "poetry"})


def test_prepare_records_the_same_corpus_hash_whatever_the_workers_and_a_changed_clip_changes_it(tmp_path):
    hashes = []
    for workers in (1, 2):
        with initialize_config_dir(config_dir=CONF, version_base="1.3"):
            prepare.run(compose("config", overrides=["recipe=smoke", f"exp_dir={tmp_path / str(workers)}",
                                                     f"data.num_workers={workers}"]))
        hashes.append(read_json(ExpPaths(tmp_path / str(workers)).stamp("prepare"))["info"]["corpus_sha"])
    assert hashes[0] == hashes[1]  # caleb and Reed voices included: 5 of 124 clips differed before
    paths = ExpPaths(tmp_path / "2")
    splits = {split: read_manifest(paths.manifest(split)) for split in ("train", "dev", "test_seen",
                                                                         "test_unseen", "unlabeled")}
    assert corpus_hash(splits) == hashes[0]
    clip = Path(splits["test_unseen"][0].audio)
    audio = bytearray(clip.read_bytes())
    audio[-2] ^= 1  # one sample's lowest bit
    clip.write_bytes(bytes(audio))
    assert corpus_hash(splits) != hashes[0]
