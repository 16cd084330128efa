"""Importers on tiny fixtures in each corpus's real layout, their error messages, and the shipped configs."""

from __future__ import annotations

import gzip
import inspect
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hydra.utils import get_method
from omegaconf import OmegaConf

from asr_kd.data.importers._common import transcript
from asr_kd.data.importers.kaldi import import_kaldi
from asr_kd.data.importers.librispeech import import_librispeech
from asr_kd.data.importers.ljspeech import import_ljspeech
from asr_kd.data.importers.manifest import import_manifest
from asr_kd.data.manifest import Utterance, read_manifest
from asr_kd.data.validate import validate_utterances
from asr_kd.errors import DataError
from asr_kd.scoring.text import cardinal

SR = 16000
CONF = Path(__file__).resolve().parents[2] / "conf" / "data"
FSDD = Path(__file__).resolve().parents[3] / "shared" / "data" / "fsdd"


def audio(path: Path, seconds: float = 0.5, sr: int = SR) -> Path:
    """Write a short tone (any extension soundfile knows) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(round(seconds * sr)) / sr
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sr)
    return path


def text_file(path: Path, lines: list[str] | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(lines if isinstance(lines, bytes) else ("\n".join(lines) + "\n").encode())
    return path


def rejected(utts: list[Utterance]) -> list[tuple[str, str]]:
    """(source ``file:line``, reason category) of each utterance that validation rejects."""
    _, rejects = validate_utterances(utts, max_duration=10.0, on_error="skip")
    return [(r["source"], r["reason"].split(":")[0]) for r in rejects]


# --- shared helper ---------------------------------------------------------------------------------


def test_transcript_normalises_unless_letters_would_be_lost():
    assert transcript("Don't  STOP-now!") == "don't stop now"
    assert transcript("Café au lait") == "cafe au lait"
    assert transcript(" hello мир ") == "hello мир"  # kept raw: validate rejects it with a reason
    assert transcript(" Call 911! ") == "Call 911!"  # kept raw: validate spells or rejects it (data.numbers)


# --- LibriSpeech -----------------------------------------------------------------------------------


def librispeech(root: Path) -> Path:
    chapter = root / "train-clean-100" / "19" / "198"
    audio(chapter / "19-198-0000.flac", 0.5)
    audio(chapter / "19-198-0001.flac", 0.75)
    text_file(chapter / "19-198.trans.txt", ["19-198-0000 HELLO WORLD", "19-198-0001 IT'S A TEST"])
    audio(root / "test-clean" / "61" / "70968" / "61-70968-0000.flac", 0.25)
    text_file(root / "test-clean" / "61" / "70968" / "61-70968.trans.txt", ["61-70968-0000 GOOD BYE"])
    return chapter / "19-198.trans.txt"


def test_librispeech(tmp_path):
    librispeech(tmp_path)
    splits = import_librispeech(
        tmp_path, tmp_path, {"train": ["train-clean-100"], "test_clean": "test-clean"}
    )
    assert [u.id for u in splits["train"]] == ["19-198-0000", "19-198-0001"]
    first = splits["train"][1]
    assert first.text == "it's a test" and first.speaker == "19" and first.duration == pytest.approx(0.75)
    assert os.path.isabs(first.audio) and first.audio.endswith("19-198-0001.flac")
    assert first.source == f"{tmp_path}/train-clean-100/19/198/19-198.trans.txt:2"
    assert [(u.id, u.text) for u in splits["test_clean"]] == [("61-70968-0000", "good bye")]


def test_librispeech_bad_lines_are_left_to_validation_with_their_line(tmp_path):
    transcript = librispeech(tmp_path)
    text_file(transcript, b"19-198-0000 HELLO\n19-198-0001 CAF\xe9\n19-198-0002 NO AUDIO\n")
    utts = import_librispeech(tmp_path, tmp_path, {"train": ["train-clean-100"]})["train"]
    assert rejected(utts) == [(f"{transcript}:2", "invalid UTF-8"), (f"{transcript}:3", "missing audio")]


def test_librispeech_malformed_line(tmp_path):
    text_file(librispeech(tmp_path), ["19-198-0000 HELLO", "HELLO WORLD"])
    with pytest.raises(ValueError, match=r"19-198.trans.txt:2: malformed line"):
        import_librispeech(tmp_path, tmp_path, {"train": ["train-clean-100"]})


def test_librispeech_missing_subset(tmp_path):
    with pytest.raises(FileNotFoundError, match="dev-clean"):
        import_librispeech(tmp_path, tmp_path, {"dev": ["dev-clean"]})


# --- LJSpeech --------------------------------------------------------------------------------------


def ljspeech(root: Path, n: int = 10) -> Path:
    for i in range(n):
        audio(root / "wavs" / f"LJ001-{i:04d}.wav", 0.25)
    lines = [f"LJ001-{i:04d}|Chapter {i}.|Chapter number {cardinal(i)}." for i in range(n)]
    return text_file(root / "metadata.csv", lines)


def test_ljspeech_splits_are_disjoint_and_deterministic(tmp_path):
    ljspeech(tmp_path)
    splits = import_ljspeech(tmp_path, tmp_path, held_out=2, seed=3)
    assert {k: len(v) for k, v in splits.items()} == {"train": 6, "dev": 2, "test": 2}
    ids = [u.id for v in splits.values() for u in v]
    assert len(set(ids)) == 10
    assert splits == import_ljspeech(tmp_path, tmp_path, held_out=2, seed=3)
    assert import_ljspeech(tmp_path, tmp_path, held_out=0.2)["test"].__len__() == 2
    u = splits["train"][0]
    assert u.text == f"chapter number {cardinal(int(u.id[-4:]))}"  # the normalised column
    assert u.speaker == "ljspeech"


def test_ljspeech_errors(tmp_path):
    metadata = ljspeech(tmp_path)
    with pytest.raises(ValueError, match="cannot hold out 2 x 5 of 10"):
        import_ljspeech(tmp_path, tmp_path, held_out=5)
    lines = metadata.read_text().splitlines()
    text_file(metadata, [*lines[:3], "LJ001-0003", *lines[4:]])
    with pytest.raises(ValueError, match=r"metadata.csv:4: malformed line"):
        import_ljspeech(tmp_path, tmp_path, held_out=1)


def test_ljspeech_bad_lines_are_left_to_validation_with_their_line(tmp_path):
    metadata = ljspeech(tmp_path)
    text_file(metadata, metadata.read_bytes() + b"LJ001-0010|Caf\xe9|Caf\xe9\nLJ999-0000|Text|Text\n")
    splits = import_ljspeech(tmp_path, tmp_path, held_out=1)
    utts = [u for split in splits.values() for u in split]
    assert sorted(rejected(utts)) == [
        (f"{metadata}:11", "invalid UTF-8"),
        (f"{metadata}:12", "missing audio"),
    ]


# --- Kaldi -----------------------------------------------------------------------------------------


def kaldi(d: Path, segments: bool = True) -> Path:
    audio(d / "audio" / "rec1.wav", 2.0)
    audio(d / "audio" / "rec2.wav", 1.0)
    text_file(d / "wav.scp", ["rec1 audio/rec1.wav", f"rec2 {d / 'audio' / 'rec2.wav'}"])
    if segments:
        text_file(d / "segments", ["a-1 rec1 0.00 0.80", "a-2 rec1 0.90 1.70", "b-1 rec2 0.25 -1"])
        text_file(d / "text", ["a-1 ONE TWO", "a-2 Three", "b-1 four"])
        text_file(d / "utt2spk", ["a-1 spkA", "a-2 spkA", "b-1 spkB"])
    else:
        text_file(d / "text", ["rec1 ONE", "rec2 TWO"])
    return d


def test_kaldi_with_segments(tmp_path):
    utts = import_kaldi(tmp_path, {"train": kaldi(tmp_path / "train")})["train"]
    assert [(u.id, u.text, u.speaker, u.start, u.end) for u in utts] == [
        ("a-1", "one two", "spkA", 0.0, 0.8),
        ("a-2", "three", "spkA", 0.9, 1.7),
        ("b-1", "four", "spkB", 0.25, None),
    ]
    assert [u.duration for u in utts] == pytest.approx([0.8, 0.8, 0.75])
    assert utts[0].audio == str(tmp_path / "train" / "audio" / "rec1.wav")
    assert utts[2].source == f"{tmp_path}/train/text:3"
    assert rejected(utts) == []


def test_kaldi_without_segments(tmp_path):
    utts = import_kaldi(tmp_path, {"dev": kaldi(tmp_path / "dev", segments=False)})["dev"]
    assert [(u.id, u.text, u.speaker, u.end) for u in utts] == [
        ("rec1", "one", None, None),
        ("rec2", "two", None, None),
    ]
    assert utts[0].duration == pytest.approx(2.0)


SEGS = ["a-2 rec1 0.9 1.7", "b-1 rec2 0 1"]


@pytest.mark.parametrize(
    "name,lines,match",
    [
        ("wav.scp", ["rec1 sph2pipe -f wav rec1.sph |", "rec2 audio/rec2.wav"], r"wav.scp:1: piped"),
        ("wav.scp", ["rec1 audio/rec1.wav", "rec2 feats.ark:1234"], r"wav.scp:2: extended filename"),
        ("wav.scp", ["rec1 audio/rec1.wav", "rec1 audio/rec2.wav"], r"wav.scp:2: duplicate key"),
        ("segments", ["a-1 rec1 0.0", *SEGS], r"segments:1: malformed"),
        ("segments", ["a-1 rec1 0.0 x", *SEGS], r"segments:1: end is not"),
        ("segments", ["a-1 rec9 0 1", *SEGS], r"segments:1: recording"),
        ("segments", ["a-1 rec1 0.5 0.2", *SEGS], r"segments:1: bad segment times"),
        ("text", ["a-1 ONE", "a-2 TWO"], r"text: 1 utterance\(s\) missing \(e.g. b-1\)"),
    ],
    ids=["piped", "ark offset", "duplicate", "short segment", "bad time", "unknown rec", "end < start",
         "no transcript"],
)  # fmt: skip
def test_kaldi_errors(tmp_path, name, lines, match):
    folder = kaldi(tmp_path / "train")
    text_file(folder / name, lines)
    with pytest.raises(ValueError, match=match):
        import_kaldi(tmp_path, {"train": folder})


def test_kaldi_bad_audio_and_text_are_left_to_validation_with_their_line(tmp_path):
    folder = kaldi(tmp_path / "train")
    text_file(folder / "wav.scp", ["rec1 audio/rec1.wav", "rec2 audio/gone.wav"])
    text_file(folder / "text", b"a-1 ONE\na-2 \xc3(\nb-1 X\n")
    utts = import_kaldi(tmp_path, {"train": folder})["train"]
    assert rejected(utts) == [(f"{folder}/text:2", "invalid UTF-8"), (f"{folder}/text:3", "missing audio")]


# --- generic manifests -----------------------------------------------------------------------------


def test_manifest_jsonl_csv_tsv(tmp_path):
    audio(tmp_path / "wav" / "a.wav", 0.5)
    audio(tmp_path / "wav" / "b.flac", 1.0)
    rows = [
        {"id": "a", "audio": "wav/a.wav", "text": "Hello!"},
        {
            "id": "b",
            "audio": str(tmp_path / "wav" / "b.flac"),
            "text": "two",
            "speaker": "s2",
            "start": 0.5,
            "end": None,
        },
    ]
    text_file(tmp_path / "train.jsonl", [json.dumps(r) for r in rows])
    text_file(
        tmp_path / "dev.csv",
        ["\ufeffid,audio,text,speaker,start,end,duration", 'a,wav/a.wav,"Hi, you",s1,,,'],
    )
    text_file(tmp_path / "test.tsv", ["id\taudio\ttext\tstart\tend", "b\twav/b.flac\tbye\t0.25\t0.75"])
    files = {"train": tmp_path / "train.jsonl", "dev": tmp_path / "dev.csv", "test": tmp_path / "test.tsv"}
    splits = import_manifest(tmp_path, files)
    a, b = splits["train"]
    assert (a.audio, a.duration, a.text, a.speaker) == (
        str(tmp_path / "wav" / "a.wav"),
        0.5,
        "hello",
        None,
    )
    assert (b.start, b.end, b.duration, b.speaker) == (0.5, None, 0.5, "s2")
    assert splits["dev"] == [Utterance("a", str(tmp_path / "wav" / "a.wav"), 0.5, "hi you", "s1")]
    assert (splits["test"][0].start, splits["test"][0].end, splits["test"][0].duration) == (0.25, 0.75, 0.5)


ROW = '{"id": "a", "audio": "wav/a.wav", "text": "x"}'


@pytest.mark.parametrize(
    "name,lines,match",
    [
        ("m.csv", ["id,audio", "a,wav/a.wav"], r"m.csv:1: header lacks column\(s\) \['text'\]"),
        ("m.csv", ["id,audio,text", "a,wav/a.wav,hi,extra"], r"m.csv:2: malformed row"),
        ("m.csv", ["id,audio,text,start", "a,wav/a.wav,hi,soon"], r"m.csv:2: start is not a number"),
        ("m.jsonl", [ROW, "{oops"], r"m.jsonl:2: not valid JSON"),
        ("m.jsonl", [ROW, "[1, 2]"], r"m.jsonl:2: expected a JSON object"),
        ("m.jsonl", ['{"id": "a", "text": "x"}'], r"m.jsonl:1: missing field\(s\) \['audio'\]"),
        ("m.txt", ["whatever"], r"unknown manifest format"),
    ],
    ids=["header", "field count", "number", "bad json", "not an object", "missing field", "suffix"],
)  # fmt: skip
def test_manifest_errors(tmp_path, name, lines, match):
    audio(tmp_path / "wav" / "a.wav")
    with pytest.raises(ValueError, match=match):
        import_manifest(tmp_path, {"train": text_file(tmp_path / name, lines)})


def test_manifest_bad_rows_are_left_to_validation_with_their_line(tmp_path):
    audio(tmp_path / "wav" / "a.wav")
    csv_file = text_file(
        tmp_path / "m.csv", b"id,audio,text\na,wav/a.wav,caf\xe9\nb,wav/zz.wav,x\na,wav/a.wav,y\n"
    )
    jsonl = text_file(tmp_path / "m.jsonl", ['{"id": "c", "audio": "wav/a.wav", "text": ""}'])
    splits = import_manifest(tmp_path, {"train": csv_file, "test": jsonl})
    assert rejected(splits["train"]) == [
        (f"{csv_file}:2", "invalid UTF-8"),
        (f"{csv_file}:3", "missing audio"),
        (f"{csv_file}:4", "duplicate id"),
    ]
    assert rejected(splits["test"]) == [(f"{jsonl}:1", "empty transcript")]


# --- Lhotse ----------------------------------------------------------------------------------------


def test_lhotse_round_trip(tmp_path):
    pytest.importorskip("lhotse")
    from asr_kd.data.importers.lhotse_io import export_lhotse, import_lhotse

    long, short = audio(tmp_path / "a" / "x.wav", 2.0), audio(tmp_path / "b" / "x.flac", 0.5)
    utts = [
        Utterance("u1", str(long), 0.5, "one two", "s1", start=0.25, end=0.75),
        Utterance("u2", str(long), 1.0, "three", "s1", start=1.0, end=None),
        Utterance("u3", str(short), 0.5, "four", "s2"),
    ]
    export_lhotse(utts, tmp_path / "cuts.jsonl.gz")
    first = (tmp_path / "cuts.jsonl.gz").read_bytes()
    cuts = [json.loads(line) for line in gzip.decompress(first).decode().splitlines()]
    assert [c["type"] for c in cuts] == ["MonoCut"] * 3
    assert len({c["recording"]["id"] for c in cuts}) == 2  # one recording per file, ids unique
    export_lhotse(utts, tmp_path / "cuts.jsonl.gz")
    assert (tmp_path / "cuts.jsonl.gz").read_bytes() == first  # byte-identical
    back = import_lhotse(tmp_path, cuts={"train": tmp_path / "cuts.jsonl.gz"})["train"]
    assert back == utts


def test_lhotse_recordings_and_supervisions(tmp_path):
    pytest.importorskip("lhotse")
    from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet

    from asr_kd.data.importers.lhotse_io import import_lhotse

    rec = Recording.from_file(audio(tmp_path / "r.wav", 2.0), recording_id="r")
    RecordingSet.from_recordings([rec]).to_file(tmp_path / "recs.jsonl.gz")
    sups = [SupervisionSegment("s1", "r", 0.5, 1.0, text="Hello there", speaker="ann")]
    SupervisionSet.from_segments(sups).to_file(tmp_path / "sups.jsonl.gz")
    utts = import_lhotse(
        tmp_path,
        recordings={"dev": tmp_path / "recs.jsonl.gz"},
        supervisions={"dev": tmp_path / "sups.jsonl.gz"},
    )["dev"]
    assert utts == [Utterance("s1", str(tmp_path / "r.wav"), 1.0, "hello there", "ann", 0.5, 1.5)]

    rec = Recording.from_file(tmp_path / "r.wav", recording_id="r").to_dict()
    rec["sources"] = [{"type": "command", "channels": [0], "source": "sox r.wav -t wav - |"}]
    text_file(tmp_path / "piped.jsonl", [json.dumps(rec)])
    with pytest.raises(ValueError, match=r"piped.jsonl: recording 'r' has source\(s\) of type \['command'\]"):
        import_lhotse(
            tmp_path,
            recordings={"dev": tmp_path / "piped.jsonl"},
            supervisions={"dev": tmp_path / "sups.jsonl.gz"},
        )
    with pytest.raises(ValueError, match="give one of cuts, shar, or recordings"):
        import_lhotse(tmp_path, cuts={"dev": "a"}, recordings={"dev": "b"})


def test_lhotse_prefers_normalized_text_says_so_and_keeps_a_missing_speaker_missing(tmp_path, caplog):
    pytest.importorskip("lhotse")
    from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet

    from asr_kd.data.importers.lhotse_io import import_lhotse

    recs = [
        Recording.from_file(audio(tmp_path / f"LJ00{i}.wav", 0.5), recording_id=f"LJ00{i}") for i in (1, 2)
    ]
    sups = [  # as lhotse.recipes.ljspeech writes them: no speaker, the normalised column in custom
        SupervisionSegment(
            "LJ001",
            "LJ001",
            0.0,
            0.5,
            text="In 1455 they",
            custom={"normalized_text": "In fourteen fifty-five they"},
        ),
        SupervisionSegment("LJ002", "LJ002", 0.0, 0.5, text="Chapter 2", speaker=None),
    ]
    RecordingSet.from_recordings(recs).to_file(tmp_path / "recs.jsonl.gz")
    SupervisionSet.from_segments(sups).to_file(tmp_path / "sups.jsonl.gz")
    CutSet.from_manifests(RecordingSet.from_recordings(recs), SupervisionSet.from_segments(sups)).to_file(
        tmp_path / "cuts.jsonl.gz"
    )
    with caplog.at_level("INFO", logger="asr_kd"):
        by_cuts = import_lhotse(tmp_path, cuts={"train": tmp_path / "cuts.jsonl.gz"})["train"]
        by_sups = import_lhotse(
            tmp_path,
            recordings={"dev": tmp_path / "recs.jsonl.gz"},
            supervisions={"dev": tmp_path / "sups.jsonl.gz"},
        )["dev"]
    for utts in (by_cuts, by_sups):
        assert [(u.text, u.speaker) for u in utts] == [
            ("in fourteen fifty five they", None),
            ("Chapter 2", None),
        ]
    assert (
        "import_lhotse: train: transcripts from custom['normalized_text'] (1 supervisions), text (1 "
        in caplog.text
    )
    assert (
        "import_lhotse: dev: transcripts from custom['normalized_text'] (1 supervisions), text (1 "
        in caplog.text
    )
    kept, _ = validate_utterances(by_cuts, max_duration=10.0)
    assert kept[1].text == "chapter two" and kept[1].to_dict()["speaker"] is None  # null in the manifest


# --- FSDD (real recordings) ------------------------------------------------------------------------


@pytest.mark.skipif(not (FSDD / "recordings").is_dir(), reason=f"FSDD not found at {FSDD}")
def test_fsdd_connected_digits(tmp_path):
    from asr_kd.data.importers import fsdd

    settings = dict(held_out_speaker="george", num_train=6, num_dev=3, num_test=3, min_digits=2, max_digits=4)
    splits = fsdd.import_fsdd(tmp_path, FSDD, **settings)
    assert {k: len(v) for k, v in splits.items()} == {"train": 6, "dev": 3, "test": 3}
    assert {u.speaker for u in splits["test"]} == {"george"}
    assert "george" not in {u.speaker for u in splits["train"] + splits["dev"]}
    pools = fsdd._pools(fsdd._scan(FSDD / "recordings"), "george", dev_takes=5, unlabeled_takes=0)
    used = {}
    for split, utts in splits.items():
        for i, u in enumerate(utts):
            words = u.text.split()
            assert 2 <= len(words) <= 4 and set(words) <= set(fsdd.DIGIT_WORDS)
            assert Path(u.audio).parent == tmp_path / "audio" / "fsdd" / split
            info = sf.info(u.audio)
            assert info.samplerate == 16000 and u.duration == pytest.approx(info.duration)
            plan = fsdd._plan(split, i, pools[split], 0, (2, 4), (0.05, 0.25))
            assert [fsdd.DIGIT_WORDS[t.digit] for t in plan.takes] == words
            parts = sum(sf.info(str(t.path)).duration for t in plan.takes) + sum(plan.pauses)
            assert u.duration == pytest.approx(parts, abs=0.002 * (2 * len(words) + 1))
            used.setdefault(split, set()).update(t.path for t in plan.takes)
    assert not used["train"] & (used["dev"] | used["test"])
    mtimes = {u.audio: os.stat(u.audio).st_mtime_ns for v in splits.values() for u in v}
    assert fsdd.import_fsdd(tmp_path, FSDD, **settings) == splits  # deterministic, files reused
    assert mtimes == {a: os.stat(a).st_mtime_ns for a in mtimes}
    assert rejected([u for v in splits.values() for u in v]) == []


@pytest.mark.skipif(not (FSDD / "recordings").is_dir(), reason=f"FSDD not found at {FSDD}")
def test_fsdd_unlabeled_split_is_the_held_out_speakers_other_takes(tmp_path):
    from asr_kd.data.importers import fsdd

    settings = dict(held_out_speaker="theo", num_train=2, num_dev=1, num_test=8, min_digits=3, max_digits=5)
    splits = fsdd.import_fsdd(tmp_path, FSDD, num_unlabeled=8, unlabeled_takes=25, **settings)
    unlabeled, test = splits["unlabeled"], splits["test"]
    assert len(unlabeled) == 8 and all(u.text is None and u.speaker == "theo" for u in unlabeled)
    assert all(len(u.text.split()) >= 3 for u in test)
    pools = fsdd._pools(fsdd._scan(FSDD / "recordings"), "theo", dev_takes=5, unlabeled_takes=25)
    takes = {split: {t.take for ts in pools[split].values() for t in ts} for split in ("unlabeled", "test")}
    assert takes == {"unlabeled": set(range(25)), "test": set(range(25, 50))}  # no test recording is heard
    assert {Path(u.audio).parent.name for u in unlabeled} == {"unlabeled"}
    assert "unlabeled" not in fsdd.import_fsdd(tmp_path, FSDD, **settings)  # none unless asked for
    with pytest.raises(DataError, match="no recordings left for the unlabeled split"):
        fsdd.import_fsdd(tmp_path, FSDD, num_unlabeled=2, **settings)


# --- shipped configs -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["librispeech", "ljspeech", "kaldi", "manifest", "lhotse", "fsdd"])
def test_config_names_a_function_that_takes_its_settings(name):
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    fn = get_method(cfg._target_)
    settings = [k for k in cfg if not k.startswith("_")]
    inspect.signature(fn).bind_partial(work_dir=Path("."), **dict.fromkeys(settings))
    assert fn.__name__ == f"import_{name}"


# --- untranscribed audio (the unlabeled split, data.unlabeled) --------------------------------------


def test_kaldi_manifest_and_lhotse_take_an_unlabeled_split_without_texts(tmp_path):
    pytest.importorskip("lhotse")
    from lhotse import CutSet, Recording, RecordingSet

    from asr_kd.data.importers.lhotse_io import import_lhotse

    folder = kaldi(tmp_path / "unl")
    (folder / "text").unlink()
    utts = import_kaldi(tmp_path, {"unlabeled": folder})["unlabeled"]
    assert [(u.id, u.text, u.speaker, u.start, u.end) for u in utts] == [
        ("a-1", None, "spkA", 0.0, 0.8),
        ("a-2", None, "spkA", 0.9, 1.7),
        ("b-1", None, "spkB", 0.25, None),
    ]
    assert utts[1].source == f"{folder}/segments:2"  # no text file: the segment's line
    with pytest.raises(FileNotFoundError, match="text: file does not exist"):
        import_kaldi(tmp_path, {"train": folder})  # a labelled split still needs its transcripts

    audio(tmp_path / "wav" / "a.wav")
    csv_file = text_file(tmp_path / "unl.csv", ["id,audio", "a,wav/a.wav"])
    jsonl = text_file(tmp_path / "unl.jsonl", ['{"id": "b", "audio": "wav/a.wav", "text": "ignored"}'])
    for manifest in (csv_file, jsonl):
        assert [u.text for u in import_manifest(tmp_path, {"unlabeled": manifest})["unlabeled"]] == [None]
    with pytest.raises(ValueError, match=r"header lacks column\(s\) \['text'\]"):
        import_manifest(tmp_path, {"train": csv_file})

    recs = RecordingSet.from_recordings([Recording.from_file(tmp_path / "wav" / "a.wav", recording_id="r")])
    CutSet.from_manifests(recordings=recs).to_file(tmp_path / "cuts.jsonl.gz")  # cuts without supervisions
    utts = import_lhotse(tmp_path, cuts={"unlabeled": tmp_path / "cuts.jsonl.gz"})["unlabeled"]
    assert [(u.audio, u.duration, u.text) for u in utts] == [(str(tmp_path / "wav" / "a.wav"), 0.5, None)]
    assert rejected(import_lhotse(tmp_path, cuts={"train": tmp_path / "cuts.jsonl.gz"})["train"]) == [
        (f"{tmp_path / 'cuts.jsonl.gz'}:1", "empty transcript")
    ]


def test_untranscribed_sources_of_every_kind_with_prefixed_ids(tmp_path, caplog):
    pytest.importorskip("lhotse")
    from lhotse import Recording, RecordingSet

    from asr_kd.data.importers.untranscribed import read_untranscribed

    podcasts = tmp_path / "podcasts"
    audio(podcasts / "ep 1.wav")
    audio(podcasts / "s2" / "a.flac")
    audio(podcasts / "s2" / "a.ogg")  # same stem: made unique
    audio(podcasts / ".hidden" / "x.wav")
    text_file(podcasts / "notes.txt", ["not audio"])
    other = tmp_path / "more" / "podcasts"  # another source of the same name
    audio(other / "z.wav")
    folder = kaldi(tmp_path / "kaldi_unl")
    (folder / "text").unlink()
    csv_file = text_file(tmp_path / "extra.csv", ["id,audio,text", f"x,{podcasts / 'ep 1.wav'},never read"])
    recs = RecordingSet.from_recordings([Recording.from_file(podcasts / "s2" / "a.flac", recording_id="r")])
    recs.to_file(tmp_path / "recs.jsonl.gz")  # a RecordingSet: one utterance per recording
    with caplog.at_level("INFO", logger="asr_kd"):
        utts = read_untranscribed([podcasts, other, folder, csv_file, tmp_path / "recs.jsonl.gz"])
    assert [u.id for u in utts] == [
        "unl-podcasts-ep_1", "unl-podcasts-s2-a", "unl-podcasts-s2-a-2", "unl-podcasts2-z",
        "unl-kaldi_unl-a-1", "unl-kaldi_unl-a-2", "unl-kaldi_unl-b-1", "unl-extra-x", "unl-recs-r",
    ]  # fmt: skip
    assert all(u.text is None for u in utts) and utts[0].duration == pytest.approx(0.5)
    assert utts[1].audio == str(podcasts / "s2" / "a.flac")
    assert "left out 1 files not named as audio (.txt 1)" in caplog.text
    with pytest.raises(FileNotFoundError, match="gone: untranscribed audio"):
        read_untranscribed([tmp_path / "gone"])
    with pytest.raises(ValueError, match="no audio file in the folder"):
        read_untranscribed([text_file(tmp_path / "empty" / "a.txt", ["x"]).parent])


@pytest.mark.parametrize("utt_id", ["../../escape", "a/b", "..", "a\\b", "a\nb"])
def test_ids_that_cannot_name_a_file_are_refused_naming_the_line(tmp_path, utt_id):
    audio(tmp_path / "a.wav")
    text_file(tmp_path / "train.jsonl", [json.dumps({"id": utt_id, "audio": "a.wav", "text": "x"})])
    message = f"train.jsonl:1: utterance id {utt_id!r} cannot name a file"
    with pytest.raises(DataError, match=re.escape(message)):
        import_manifest(tmp_path, {"train": tmp_path / "train.jsonl"})


@pytest.mark.parametrize("line,message", [
    ("[1, 2]", "expected a JSON object, got list"),
    ('{"id": "a", "audio": "a.wav", "duration": "long"}', "wrong type of ['duration']"),
    ('{"id": 7, "audio": "a.wav", "duration": 1.0}', "wrong type of ['id']"),
])
def test_a_bad_line_of_an_exp_manifest_is_one_line_naming_it(tmp_path, line, message):
    text_file(tmp_path / "train.jsonl", ['{"id": "b", "audio": "b.wav", "duration": 1.0}', line])
    with pytest.raises(DataError, match=re.escape(f"train.jsonl:2: {message}")):
        read_manifest(tmp_path / "train.jsonl")
