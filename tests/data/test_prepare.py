"""The prepare stage on a small generic-manifest corpus: bad input stops it cleanly (naming file and
line, leaving earlier outputs alone) or is skipped and listed; vocabulary, BPE and speed perturbation."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hydra import compose, initialize_config_dir

from asr_kd.data.manifest import read_manifest
from asr_kd.data.vocabulary import load_tokenizer
from asr_kd.paths import ExpPaths
from asr_kd.stages import prepare

CONF = Path(__file__).resolve().parents[2] / "conf"
SR = 16000


def tone(path: Path, seconds: float = 0.5, level: float = 0.3, freq: float = 220.0) -> str:
    t = np.arange(round(seconds * SR)) / SR
    sf.write(path, (level * np.sin(2 * np.pi * freq * t)).astype(np.float32), SR)
    return path.name


def corpus(
    root: Path,
    dev_rows: list[str] | None = None,
    test_rows: list[str] | None = None,
    train_rows: list[str] | None = None,
) -> dict:
    """train/dev/test CSV manifests over short tones (each file its own pitch, so no two share their
    audio; ``a2.wav`` is a copy of ``a.wav``); returns the ``data.files`` mapping."""
    root.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate("abcdef"):
        tone(root / f"{name}.wav", freq=220.0 + 20 * i)
    tone(root / "a2.wav", freq=220.0)
    tone(root / "silent.wav", level=0.0)
    rows = {
        "train": train_rows or ["t1,a.wav,Hello world", "t2,b.wav,hello there", "t3,c.wav,World"],
        "dev": dev_rows or ["d1,d.wav,hello"],
        "test": test_rows or ["e1,e.wav,there world"],
    }
    files = {}
    for split, lines in rows.items():
        files[split] = root / f"{split}.csv"
        files[split].write_text("\n".join(["id,audio,text", *lines]) + "\n", encoding="utf-8")
    return {k: str(v) for k, v in files.items()}


def config(exp: Path, files: dict, *overrides: str):
    spec = ",".join(f"{k}:'{v}'" for k, v in files.items())
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(
            "config",
            overrides=[
                "data=manifest",
                f"data.files={{{spec}}}",
                f"exp_dir={exp}",
                "test_sets=[test]",
                *overrides,
            ],
        )


def outputs(exp: Path) -> dict[str, bytes]:
    return {str(p.relative_to(exp)): p.read_bytes() for p in sorted(exp.rglob("*")) if p.is_file()}


def test_good_corpus(tmp_path):
    files = corpus(tmp_path / "corpus")
    prepare.run(config(tmp_path / "exp", files))
    paths = ExpPaths(tmp_path / "exp")
    train = read_manifest(paths.manifest("train"))
    assert [(u.id, u.text) for u in train] == [("t1", "hello world"), ("t2", "hello there"), ("t3", "world")]
    assert train[0].source == f"{files['train']}:2"
    assert load_tokenizer(paths.tokens).tokens == ["<blk>", " ", "d", "e", "h", "l", "o", "r", "t", "w"]
    assert paths.rejects.read_text() == ""


def test_bad_utterance_stops_prepare_naming_file_and_line_and_keeps_earlier_outputs(tmp_path):
    exp = tmp_path / "exp"
    prepare.run(config(exp, corpus(tmp_path / "corpus")))
    before = outputs(exp)
    files = corpus(tmp_path / "corpus", dev_rows=["d1,d.wav,hello", "d2,silent.wav,hello"])
    with pytest.raises(ValueError) as info:
        prepare.run(config(exp, files, "force=true"))
    assert str(info.value).startswith(
        f"{files['dev']}:3: utterance 'd2' ({tmp_path}/corpus/silent.wav): silent audio"
    )
    assert outputs(exp) == before  # manifests, vocabulary and stamp of the earlier run untouched


def test_skip_lists_every_reject_with_its_reason_and_logs_a_summary(tmp_path, caplog):
    dev = ["d1,d.wav,hello", "d2,silent.wav,hello", "d3,gone.wav,hello", "d1,a.wav,again", "d4,d.wav,?!"]
    files = corpus(tmp_path / "corpus", dev_rows=dev, test_rows=["e1,e.wav,there world", "e2,f.wav,quiz"])
    exp = tmp_path / "exp"
    with caplog.at_level(logging.INFO, logger="asr_kd"):
        prepare.run(config(exp, files, "data.on_error=skip"))
    paths = ExpPaths(exp)
    assert [u.id for u in read_manifest(paths.manifest("dev"))] == ["d1"]
    assert [u.id for u in read_manifest(paths.manifest("test"))] == ["e1"]
    rejects = [json.loads(line) for line in paths.rejects.read_text().splitlines()]
    assert [(r["split"], r["id"], r["source"], r["reason"].split(":")[0]) for r in rejects] == [
        ("dev", "d2", f"{files['dev']}:3", "silent audio"),
        ("dev", "d3", f"{files['dev']}:4", "missing audio"),
        ("dev", "d1", f"{files['dev']}:5", "duplicate id"),
        ("dev", "d4", f"{files['dev']}:6", "empty transcript"),
        ("test", "e2", f"{files['test']}:3", "out of vocabulary"),
    ]
    assert "character 'q' of 'quiz' is not in the vocabulary" in rejects[-1]["reason"]
    summary = "5 utterances rejected: silent audio 1, missing audio 1, duplicate id 1, empty transcript 1, "
    assert summary + "out of vocabulary 1" in caplog.text
    assert "prepare: dev: 1 utterances, 0.00 h, 4 rejected" in caplog.text


def test_a_split_left_empty_is_an_error(tmp_path):
    files = corpus(tmp_path / "corpus", dev_rows=["d2,silent.wav,hello"])
    with pytest.raises(
        ValueError, match=r"split 'dev': no usable utterance left \(1 utterance rejected: silent"
    ):
        prepare.run(config(tmp_path / "exp", files, "data.on_error=skip"))


def test_unknown_on_error_is_refused(tmp_path):
    with pytest.raises(ValueError, match="data.on_error must be 'raise' or 'skip', got 'ignore'"):
        prepare.run(config(tmp_path / "exp", corpus(tmp_path / "corpus"), "data.on_error=ignore"))


def test_speed_perturbation_adds_resampled_train_copies(tmp_path):
    exp = tmp_path / "exp"
    prepare.run(config(exp, corpus(tmp_path / "corpus"), "data.speed_perturb=[0.9,1.0,1.1]"))
    train = {u.id: u for u in read_manifest(ExpPaths(exp).manifest("train"))}
    assert sorted(train) == [
        "t1",
        "t1_sp0.9",
        "t1_sp1.1",
        "t2",
        "t2_sp0.9",
        "t2_sp1.1",
        "t3",
        "t3_sp0.9",
        "t3_sp1.1",
    ]
    for factor in (0.9, 1.1):
        copy = train[f"t1_sp{factor:g}"]
        assert copy.text == "hello world" and copy.duration == pytest.approx(0.5 / factor, abs=1e-3)
        info = sf.info(copy.audio)
        assert info.format == "FLAC" and info.samplerate == SR
    assert [u.id for u in read_manifest(ExpPaths(exp).manifest("dev"))] == ["d1"]  # train only


def test_bpe_tokenizer_is_chosen_by_config(tmp_path):
    exp = tmp_path / "exp"
    prepare.run(config(exp, corpus(tmp_path / "corpus"), "tokenizer=bpe", "tokenizer.vocab_size=30"))
    tokenizer = load_tokenizer(ExpPaths(exp).tokens)
    assert type(tokenizer).__name__ == "BpeTokenizer" and tokenizer.tokens[:2] == ["<blk>", "<unk>"]
    assert tokenizer.decode(tokenizer.encode("hello there world")) == "hello there world"


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_an_utterance_in_two_splits_stops_prepare_naming_both_lines(tmp_path, on_error):
    files = corpus(tmp_path / "corpus", dev_rows=["d1,d.wav,hello", "t2,b.wav,hello there"])
    with pytest.raises(ValueError) as info:
        prepare.run(config(tmp_path / "exp", files, f"data.on_error={on_error}"))
    assert str(info.value) == (
        f"{files['train']}:3 and {files['dev']}:3: utterance 't2' is in split 'train' and in split 'dev': "
        "leakage between splits; keep it in one split only"
    )
    assert not (tmp_path / "exp" / "data").exists() or not any((tmp_path / "exp" / "data").glob("*.jsonl"))


def test_the_same_audio_under_another_name_stops_prepare(tmp_path):
    files = corpus(tmp_path / "corpus", test_rows=["e1,e.wav,there", "e2,a2.wav,hello world"])
    with pytest.raises(ValueError) as info:
        prepare.run(config(tmp_path / "exp", files, "data.on_error=skip", "data.speed_perturb=[0.9,1.1]"))
    root = tmp_path / "corpus"
    assert str(info.value) == (
        f"{files['train']}:2 and {files['test']}:3: utterances 't1' (train, {root / 'a.wav'}) and 'e2' "
        f"(test, {root / 'a2.wav'}) have the same audio: leakage between splits; keep it in one split only"
    )


def test_digits_are_spelled_out_and_never_reach_the_vocabulary(tmp_path):
    train = ["t1,a.wav,Call 911 in 2024", "t2,b.wav,hello there", "t3,c.wav,World"]
    files = corpus(tmp_path / "corpus", train_rows=train, test_rows=["e1,e.wav,the 3rd"])
    exp = tmp_path / "exp"
    prepare.run(config(exp, files))
    paths = ExpPaths(exp)
    assert read_manifest(paths.manifest("train"))[0].text == "call nine hundred eleven in twenty twenty four"
    assert read_manifest(paths.manifest("test"))[0].text == "the third"
    assert not set("0123456789") & set(load_tokenizer(paths.tokens).tokens)


def test_digits_are_rejected_with_numbers_reject(tmp_path):
    train = ["t1,a.wav,Call 911 in 2024", "t2,b.wav,hello there", "t3,c.wav,World"]
    files = corpus(tmp_path / "corpus", train_rows=train)
    with pytest.raises(ValueError, match=rf"^{files['train']}:2: utterance 't1' \(.*a.wav\): digits: "):
        prepare.run(config(tmp_path / "exp", files, "data.numbers=reject"))
    prepare.run(config(tmp_path / "exp", files, "data.numbers=reject", "data.on_error=skip"))
    paths = ExpPaths(tmp_path / "exp")
    assert [u.id for u in read_manifest(paths.manifest("train"))] == ["t2", "t3"]
    reasons = [json.loads(line)["reason"] for line in paths.rejects.read_text().splitlines()]
    assert reasons == [
        "digits: the transcript 'Call 911 in 2024' holds '01249', refused by data.numbers=reject "
        "(data.numbers=spell writes them out in words)"
    ]


# --- untranscribed audio ---------------------------------------------------------------------------


def untranscribed(root: Path) -> dict[str, Path]:
    """A folder of two new tones (one in a sub-folder) and a manifest with a transcript to ignore."""
    (root / "folder" / "sub").mkdir(parents=True)
    tone(root / "folder" / "g.wav", freq=400.0)
    tone(root / "folder" / "sub" / "h.wav", freq=420.0)
    tone(root / "i.wav", freq=440.0)
    manifest = root / "more.jsonl"
    manifest.write_text('{"id": "m1", "audio": "i.wav", "text": "quiz 42"}\n', encoding="utf-8")
    return {"folder": root / "folder", "manifest": manifest}


def test_unlabeled_paths_become_the_untranscribed_split_and_are_perturbed_like_train(tmp_path, caplog):
    files, extra = corpus(tmp_path / "corpus"), untranscribed(tmp_path / "extra")
    exp = tmp_path / "exp"
    paths = ExpPaths(exp)
    sources = f"data.unlabeled=['{extra['folder']}','{extra['manifest']}']"
    with caplog.at_level(logging.INFO, logger="asr_kd"):
        prepare.run(config(exp, files, sources, "data.speed_perturb=[1.0,1.1]"))
    unlabeled = read_manifest(paths.manifest("unlabeled"))
    assert [(u.id, u.text) for u in unlabeled] == [
        ("unl-folder-g", None), ("unl-folder-sub-h", None), ("unl-more-m1", None),
        ("unl-folder-g_sp1.1", None), ("unl-folder-sub-h_sp1.1", None), ("unl-more-m1_sp1.1", None),
    ]  # fmt: skip
    rows = paths.manifest("unlabeled").read_text().splitlines()
    assert all(json.loads(row)["text"] is None for row in rows)  # no transcript written
    assert "q" not in load_tokenizer(paths.tokens).tokens  # its text was never read, nor checked
    assert "prepare: unlabeled: 6 utterances" in caplog.text
    # without the sources, the split (and its manifest) is gone, not left stale
    prepare.run(config(exp, files, "force=true"))
    assert not paths.manifest("unlabeled").exists() and paths.manifest("train").exists()


def test_bad_unlabeled_audio_is_refused_or_skipped_and_a_labelled_split_still_needs_texts(tmp_path):
    files, extra = corpus(tmp_path / "corpus"), untranscribed(tmp_path / "extra")
    (extra["folder"] / "sub" / "bad.wav").write_bytes(b"not audio at all " * 20)
    sources = f"data.unlabeled=['{extra['folder']}']"
    with pytest.raises(ValueError, match=r"utterance 'unl-folder-sub-bad' \(.*bad.wav\): unreadable audio"):
        prepare.run(config(tmp_path / "exp", files, sources))
    prepare.run(config(tmp_path / "exp", files, sources, "data.on_error=skip"))
    paths = ExpPaths(tmp_path / "exp")
    assert [u.id for u in read_manifest(paths.manifest("unlabeled"))] == ["unl-folder-g", "unl-folder-sub-h"]
    rejects = [json.loads(line) for line in paths.rejects.read_text().splitlines()]
    assert [(r["split"], r["id"], r["reason"].split(":")[0]) for r in rejects] == [
        ("unlabeled", "unl-folder-sub-bad", "unreadable audio")
    ]
    # a labelled split: a row without its text is still an empty transcript
    files = corpus(tmp_path / "corpus", dev_rows=["d1,d.wav,hello", "d2,f.wav,"])
    with pytest.raises(ValueError, match=rf"^{files['dev']}:3: utterance 'd2' .*: empty transcript"):
        prepare.run(config(tmp_path / "exp2", files))


def test_unlabeled_audio_identical_to_a_test_clip_stops_prepare(tmp_path):
    files, extra = corpus(tmp_path / "corpus"), untranscribed(tmp_path / "extra")
    shutil.copy(tmp_path / "corpus" / "e.wav", extra["folder"] / "copy.wav")  # a clip of the test split
    sources = f"data.unlabeled=['{extra['folder']}']"
    with pytest.raises(ValueError) as info:
        prepare.run(config(tmp_path / "exp", files, sources, "data.on_error=skip"))
    assert str(info.value).startswith(
        f"{files['test']}:2 and split 'unlabeled': utterances 'e1' (test, {tmp_path}/corpus/e.wav) and "
        f"'unl-folder-copy' (unlabeled, {extra['folder']}/copy.wav) have the same audio: leakage"
    )


def test_noise_views_of_train_are_listed_and_recorded(tmp_path):
    exp = tmp_path / "exp"
    files = corpus(tmp_path / "corpus")
    overrides = ("data.speed_perturb=[0.9]", "data.noise.copies=2", "data.noise.snr_db=[10,10]")
    prepare.run(config(exp, files, *overrides))
    paths = ExpPaths(exp)
    train = {u.id: u for u in read_manifest(paths.manifest("train"))}
    kinds = ("", "_sp0.9", "_nz1", "_nz2")
    assert sorted(train) == sorted(f"{t}{v}" for t in ("t1", "t2", "t3") for v in kinds)
    assert train["t1_nz2"].text == "hello world" and train["t1_nz2"].duration == pytest.approx(0.5, abs=1e-3)
    assert sf.info(train["t1_nz1"].audio).format == "FLAC"
    views = json.loads(paths.views.read_text())
    noise = {"copies": 2, "snr_db": [10.0, 10.0], "seed": 0, "files": None}
    assert views == {"train": {"speed_perturb": [0.9], "noise": noise}}  # dev and test get none
    made = {p: p.stat().st_mtime_ns for p in (exp / "data" / "audio").rglob("*.flac")}
    prepare.run(config(exp, files, *overrides, "force=true"))  # a re-run reuses every copy
    assert {p: p.stat().st_mtime_ns for p in (exp / "data" / "audio").rglob("*.flac")} == made
