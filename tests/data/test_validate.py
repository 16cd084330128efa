"""validate_utterances: every audio format soundfile writes loads; each kind of bad utterance is caught;
digits are spelled out or refused; validate_corpus refuses leakage between splits."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from audio_fixtures import (
    FORMATS,
    SR,
    garbage,
    missing,
    tone,
    truncated_flac,
    truncated_wav,
    write,
    zero_length,
)

from asr_kd.data.manifest import Utterance
from asr_kd.data.validate import (
    describe,
    lost_characters,
    summarize_rejects,
    validate_corpus,
    validate_utterances,
    write_rejects,
)


def utt(path: Path, utt_id: str = "u1", text: str = "hello world", **kw) -> Utterance:
    """An utterance over the whole file, its duration read from the header (0 when unreadable)."""
    try:
        duration = sf.info(str(path)).duration
    except Exception:
        duration = 0.0
    return Utterance(id=utt_id, audio=str(path), duration=kw.pop("duration", duration), text=text, **kw)


def check(utts: list[Utterance], **kw) -> tuple[list[Utterance], list[dict]]:
    return validate_utterances(utts, max_duration=kw.pop("max_duration", 10.0), **kw)


# --- every format validates (loading itself: tests/data/test_audio.py) ---------------------------------


@pytest.mark.parametrize("ext,subtype", FORMATS)
@pytest.mark.parametrize("sr,channels", [(8000, 1), (44100, 2)])
def test_every_format_rate_and_channel_count_is_kept(tmp_path, ext, subtype, sr, channels):
    path = write(tmp_path / f"a.{ext}", tone(0.5, sr, channels), sr, subtype=subtype)
    kept, rejects = check([utt(path)])
    assert rejects == [] and len(kept) == 1


def test_kept_text_is_normalised_and_segments_are_read(tmp_path):
    path = write(tmp_path / "a.wav", tone(2.0, SR))
    segment = utt(path, "seg", "Hello, World!", start=0.5, end=1.5, duration=1.0)
    kept, rejects = check([segment])
    assert rejects == [] and kept[0].text == "hello world" and kept[0].start == 0.5


# --- each bad utterance raises or is skipped --------------------------------------------------


def _whole(make: Callable[[Path], Path], **kw) -> Callable[[Path], list[Utterance]]:
    """A broken-file maker of tests/audio_fixtures.py as a one-utterance manifest."""
    return lambda d: [utt(make(d), **kw)]


_missing = _whole(missing)
_garbage = _whole(garbage, duration=1.0)
_truncated_wav = _whole(truncated_wav)
_truncated_flac = _whole(truncated_flac)
_zero_length = _whole(zero_length)


def _silent(d: Path) -> list[Utterance]:
    return [utt(write(d / "silent.wav", np.zeros(SR, np.float32)))]


def _empty_text(d: Path) -> list[Utterance]:
    return [utt(write(d / "a.wav", tone(1.0, SR)), text=" ?! -- ")]


def _non_latin(d: Path) -> list[Utterance]:
    return [utt(write(d / "a.wav", tone(1.0, SR)), text="hello мир")]


def _non_utf8(d: Path) -> list[Utterance]:
    raw = b"caf\xe9 au lait".decode("utf-8", errors="replace")  # as the importers read such a line
    return [utt(write(d / "a.wav", tone(1.0, SR)), text=raw)]


def _duplicate(d: Path) -> list[Utterance]:
    path = write(d / "a.wav", tone(1.0, SR))
    return [utt(path, "same"), utt(path, "same", "another one")]


def _too_long(d: Path) -> list[Utterance]:
    return [utt(write(d / "long.wav", tone(600.0, 8000), 8000))]  # 10 min: rejected from the header


def _too_short(d: Path) -> list[Utterance]:
    return [utt(write(d / "short.wav", tone(0.05, SR)))]


def _past_the_end(d: Path) -> list[Utterance]:
    return [utt(write(d / "a.wav", tone(1.0, SR)), start=0.5, end=3.0, duration=2.5)]


BAD: dict[str, tuple[Callable[[Path], list[Utterance]], str]] = {
    "missing": (_missing, "missing audio"),
    "garbage bytes": (_garbage, "unreadable audio"),
    "truncated wav": (_truncated_wav, "truncated audio"),
    "truncated flac": (_truncated_flac, "unreadable audio"),
    "zero length": (_zero_length, "empty audio"),
    "silent": (_silent, "silent audio"),
    "empty transcript": (_empty_text, "empty transcript"),
    "non-latin transcript": (_non_latin, "unsupported characters"),
    "non-utf8 transcript": (_non_utf8, "invalid UTF-8"),
    "duplicate id": (_duplicate, "duplicate id"),
    "too long": (_too_long, "too long"),
    "too short": (_too_short, "too short"),
    "segment past the end": (_past_the_end, "duration mismatch"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_utterance_raises(tmp_path, case):
    make, category = BAD[case]
    bad = make(tmp_path)
    bad[-1] = dataclasses.replace(bad[-1], source="/corpus/list.csv:7")
    with pytest.raises(ValueError, match=category) as info:
        check(bad)
    assert str(info.value).startswith(f"/corpus/list.csv:7: utterance {bad[-1].id!r} ({bad[-1].audio}): ")


@pytest.mark.parametrize("case", list(BAD))
def test_bad_utterance_is_skipped_and_listed(tmp_path, case):
    make, category = BAD[case]
    good = utt(write(tmp_path / "good.wav", tone(1.0, SR)), "good")
    bad = make(tmp_path)
    kept, rejects = check([good, *bad], on_error="skip")
    assert good in kept and len(kept) + len(rejects) == 1 + len(bad)
    assert len(rejects) == 1
    assert rejects[0]["id"] == bad[-1].id and rejects[0]["audio"] == bad[-1].audio
    assert rejects[0]["reason"].startswith(category + ":")


def test_raise_reports_the_first_problem_in_input_order(tmp_path):
    silent = _silent(tmp_path)[0]
    no_text = utt(write(tmp_path / "b.wav", tone(1.0, SR)), "second", "")
    with pytest.raises(ValueError, match="silent audio"):
        check([silent, no_text])


def test_lost_characters():
    assert lost_characters("Café, naïve DON'T ½") == []
    assert lost_characters("hello мир") == ["и", "м", "р"]
    assert lost_characters("Straße") == ["ß"]


def test_describe_names_source_line_utterance_and_audio():
    record = {"id": "u1", "audio": "/a.wav", "source": "/list.csv:3", "reason": "silent audio: peak 0"}
    assert describe(record) == "/list.csv:3: utterance 'u1' (/a.wav): silent audio: peak 0"
    assert describe({**record, "source": None}) == "utterance 'u1' (/a.wav): silent audio: peak 0"


def test_duplicate_names_the_first_occurrence(tmp_path):
    path = write(tmp_path / "a.wav", tone(1.0, SR))
    first = dataclasses.replace(utt(path, "same"), source="/l.csv:2")
    second = dataclasses.replace(utt(path, "same", "again"), source="/l.csv:9")
    _, rejects = check([first, second], on_error="skip")
    assert rejects == [
        {
            "id": "same",
            "audio": str(path),
            "source": "/l.csv:9",
            "reason": "duplicate id: the utterance at /l.csv:2 has it too",
        }
    ]


def test_rejects_file_and_summary(tmp_path):
    rejects = [
        {"id": "a", "audio": "/x.wav", "reason": "silent audio: peak 0"},
        {"id": "b", "audio": "/y.wav", "reason": "too long: 40 s"},
        {"id": "c", "audio": "/z.wav", "reason": "silent audio: peak 0"},
    ]
    write_rejects(tmp_path / "rejects.jsonl", rejects)
    lines = (tmp_path / "rejects.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == rejects
    assert summarize_rejects(rejects) == "3 utterances rejected: silent audio 2, too long 1"
    assert summarize_rejects([]) == "0 utterances rejected"


def test_unknown_on_error_is_refused():
    with pytest.raises(ValueError, match="on_error"):
        validate_utterances([], max_duration=1.0, on_error="ignore")


# --- numbers: spelled out, or refused with numbers=reject ------------------------------------------


def test_numbers_spell_writes_digits_and_symbols_out(tmp_path):
    path = write(tmp_path / "a.wav", tone(1.0, SR))
    kept, _ = check([utt(path, text="Call 911 in 2024: 50% & the 21st")])
    assert kept[0].text == "call nine hundred eleven in twenty twenty four fifty percent and the twenty first"


@pytest.mark.parametrize(
    "text,category,found", [("call 911 in 2024", "digits", "01249"), ("rock & roll", "symbols", "&"),
                            ("up 5%", "digits", "%5")]
)  # fmt: skip
def test_numbers_reject_refuses_digits_and_word_symbols(tmp_path, text, category, found):
    bad = dataclasses.replace(utt(write(tmp_path / "a.wav", tone(1.0, SR)), text=text), source="/l.csv:4")
    with pytest.raises(ValueError) as info:
        check([bad], numbers="reject")
    assert str(info.value).startswith(
        f"/l.csv:4: utterance 'u1' ({bad.audio}): {category}: the transcript {text!r} holds {found!r}"
    )
    good = utt(write(tmp_path / "b.wav", tone(1.0, SR)), "u2", "call nine one one")
    kept, rejects = check([bad, good], numbers="reject", on_error="skip")
    assert kept == [good] and [r["reason"].split(":")[0] for r in rejects] == [category]


def test_unknown_numbers_policy_is_refused():
    with pytest.raises(ValueError, match="numbers must be one of .*'spell', 'reject'.*, got 'words'"):
        validate_utterances([], max_duration=1.0, numbers="words")


# --- leakage between splits --------------------------------------------------------------------


def at(u: Utterance, source: str) -> Utterance:
    return dataclasses.replace(u, source=source)


def corpus_check(splits: dict[str, list[Utterance]], **kw):
    return validate_corpus(splits, max_duration=10.0, **kw)


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_an_id_in_two_splits_is_leakage_naming_both_lines(tmp_path, on_error):
    a = write(tmp_path / "a.wav", tone(1.0, SR, freq=220))
    b = write(tmp_path / "b.wav", tone(1.0, SR, freq=330))
    splits = {
        "train": [at(utt(a, "x"), "/c/train.jsonl:12")],
        "dev": [at(utt(b, "y"), "/c/dev.jsonl:2"), at(utt(tmp_path / "gone.wav", "x"), "/c/dev.jsonl:3")],
    }
    with pytest.raises(ValueError) as info:  # found before any audio is read: not "missing audio"
        corpus_check(splits, on_error=on_error)
    assert str(info.value) == (
        "/c/train.jsonl:12 and /c/dev.jsonl:3: utterance 'x' is in split 'train' and in split 'dev': "
        "leakage between splits; keep it in one split only"
    )


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_the_same_audio_in_two_splits_is_leakage_whatever_its_file_or_format(tmp_path, on_error):
    wav = (tone(1.0, SR) * 32767).astype(np.int16)  # the same samples, losslessly in either format
    a = write(tmp_path / "a.wav", wav)
    copy = write(tmp_path / "copy.flac", wav)
    other = write(tmp_path / "b.wav", tone(1.0, SR, freq=330))
    splits = {
        "train": [at(utt(a, "x"), "/c/train.csv:2"), at(utt(other, "z"), "/c/train.csv:3")],
        "dev": [at(utt(copy, "y"), "/c/dev.csv:2")],
    }
    with pytest.raises(ValueError) as info:
        corpus_check(splits, on_error=on_error)
    assert str(info.value) == (
        f"/c/train.csv:2 and /c/dev.csv:2: utterances 'x' (train, {a}) and 'y' (dev, {copy}) have the same "
        "audio: leakage between splits; keep it in one split only"
    )


def test_other_segments_of_one_recording_and_copies_within_a_split_are_not_leakage(tmp_path, caplog):
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, 2 * SR).astype(np.float32)
    long = write(tmp_path / "long.flac", noise)
    a = write(tmp_path / "a.wav", tone(1.0, SR))
    copy = write(tmp_path / "copy.wav", tone(1.0, SR))
    seg = {"duration": 1.0}
    splits = {
        "train": [utt(long, "s1", start=0.0, end=1.0, **seg), utt(a, "a"), utt(copy, "a-again")],
        "dev": [utt(long, "s2", start=1.0, end=None, **seg)],
        "test": [utt(long, "s3", start=0.5, end=1.5, **seg), utt(a, "dup", "x", duration=0.0)],
    }
    kept, rejects = corpus_check(splits, on_error="skip")
    assert {k: [u.id for u in v] for k, v in kept.items()} == {
        "train": ["s1", "a", "a-again"], "dev": ["s2"], "test": ["s3"]
    }  # fmt: skip
    assert [(r["split"], r["id"], r["reason"].split(":")[0]) for r in rejects] == [
        ("test", "dup", "duration mismatch")
    ]
    splits["test"].append(at(utt(long, "s4", start=1.0, end=None, **seg), "/c/test.csv:9"))
    with pytest.raises(
        ValueError, match=rf"^split 'dev' and /c/test.csv:9: utterances 's2' \(dev, {long}\[1-end s\]\)"
    ):
        corpus_check(splits, on_error="skip")
