"""Cross-fitted and ensemble caches on a tiny run (prepare -> features -> teacher -> cache, noise
views on, two folds, 5-step teachers): one entry per view that the student dataset finds; a
crossfit entry is the out-of-fold teacher's posteriors, an ensemble entry the average; a changed
fold teacher makes the cache stale; teachers that do not match are refused in one line."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from asr_kd.data.dataset import UtteranceDataset
from asr_kd.data.folds import fold_of
from asr_kd.data.manifest import read_manifest
from asr_kd.data.vocabulary import tokenizer_from_tokens
from asr_kd.distill.cache import CacheMismatchError, PosteriorCache, teacher_cache_meta
from asr_kd.distill.targets import CachedTargets
from asr_kd.distill.teacher_cache import load_cache_teachers, open_cache
from asr_kd.errors import ConfigError, StaleUpstreamError
from asr_kd.integrity import checksum_path
from asr_kd.models.adapters import BundleTeacher
from asr_kd.models.bundle import load_bundle
from asr_kd.paths import ExpPaths
from asr_kd.stages import cache, features, prepare, teacher
from asr_kd.stages.base import StageStamp
from asr_kd.stages.plan import Plan

CONF = Path(__file__).resolve().parents[2] / "conf"
TINY = ("recipe=smoke", "cache.folds=2", "data.noise.copies=1", "data.num_train=30", "data.num_dev=4",
        "data.num_test=4", "data.on_error=skip", "train.teacher.steps=5", "train.teacher.warmup_steps=2",
        "train.teacher.eval_every=5")
STUDY = ("study=views_crossfit", "+systems.student_kd_crossfit.splits=[train,dev]")


def config(exp: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=[*TINY, f"exp_dir={exp}", *overrides])


@pytest.fixture(scope="module")
def exp(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("crossfit")
    cfg = config(root, *STUDY)
    for stage in (prepare, features, teacher, cache):
        stage.run(cfg)
    return root


def posteriors(model_name: str, paths: ExpPaths, split: str, utt_id: str) -> np.ndarray:
    """(T', V) log-posteriors of ``utt_id`` computed directly with ``models/<model_name>``."""
    bundle = load_bundle(paths.checkpoint(model_name))
    dataset = UtteranceDataset.from_exp(paths, split, bundle.cmvn, bundle.tokenizer)
    feats = dataset[[u.id for u in dataset.utts].index(utt_id)]["feats"]
    with torch.no_grad():
        logits, _ = bundle.model(feats[None], torch.tensor([len(feats)]))
    return logits[0].float().log_softmax(-1).numpy()


def assert_entry(cache: PosteriorCache, paths: ExpPaths, split: str, utt_id: str,
                 expected: np.ndarray) -> None:
    """The cached top-k of ``utt_id`` are ``expected``'s values at those tokens, and its best token."""
    sha = json.loads((paths.features(split) / "index.json").read_text())["utts"][utt_id]["audio_sha"]
    values, indices = cache[PosteriorCache.key(utt_id, sha)]
    assert values.shape[0] == expected.shape[0]
    np.testing.assert_allclose(values, np.take_along_axis(expected, indices, 1), atol=2e-2, rtol=1e-3)
    assert np.array_equal(indices[:, 0], expected.argmax(-1))


def test_every_view_has_its_own_entry_that_the_student_dataset_finds(exp):
    paths = ExpPaths(exp)
    train = read_manifest(paths.manifest("train"))
    clips = {u.id for u in train if "_nz" not in u.id}
    assert {u.id for u in train} == clips | {f"{c}_nz1" for c in clips}
    views = json.loads(paths.views.read_text())["train"]
    for name in ("teacher_k16", "crossfit2_k16", "ensemble2_k16"):
        posterior_cache = PosteriorCache(paths.cache_dir(name, "train"))
        assert len(posterior_cache) == len(train) and posterior_cache.meta["views"] == views
        bundle = load_bundle(paths.checkpoint("teacher"))
        dataset = UtteranceDataset.from_exp(paths, "train", bundle.cmvn, bundle.tokenizer,
                                            CachedTargets([posterior_cache]))
        assert all(len(dataset[i]["teacher_values"]) > 0 for i in range(len(dataset)))
    assert PosteriorCache(paths.cache_dir("crossfit2_k16", "dev")).meta["views"] == {}  # dev: no views


def test_crossfit_entries_come_from_the_teacher_that_never_trained_on_the_clip(exp):
    paths = ExpPaths(exp)
    folds = json.loads(paths.folds(2).read_text())
    posterior_cache = PosteriorCache(paths.cache_dir("crossfit2_k16", "train"))
    for clip in list(folds["fold_of"])[:2]:
        fold = fold_of(folds, clip)
        for utt_id in (clip, f"{clip}_nz1"):  # the view follows its clip
            assert fold_of(folds, utt_id) == fold
            own = posteriors(f"teacher_fold{fold}of2", paths, "train", utt_id)
            assert_entry(posterior_cache, paths, "train", utt_id, own)
            with pytest.raises(AssertionError):  # not the other fold's teacher, which trained on it
                assert_entry(posterior_cache, paths, "train", utt_id,
                             posteriors(f"teacher_fold{3 - fold}of2", paths, "train", utt_id))
    dev_id = read_manifest(paths.manifest("dev"))[0].id  # a clip of no fold: both fold teachers, averaged
    both = [posteriors(f"teacher_fold{f}of2", paths, "dev", dev_id) for f in (1, 2)]
    average = np.log(np.mean(np.exp(both), axis=0))
    assert_entry(PosteriorCache(paths.cache_dir("crossfit2_k16", "dev")), paths, "dev", dev_id, average)


def test_ensemble_entries_average_every_teacher_in_probability_space(exp):
    paths = ExpPaths(exp)
    utt_id = read_manifest(paths.manifest("train"))[1].id
    names = ("teacher", "teacher_fold1of2", "teacher_fold2of2")
    every = [posteriors(name, paths, "train", utt_id) for name in names]
    average = np.log(np.mean(np.exp(every), axis=0))
    assert_entry(PosteriorCache(paths.cache_dir("ensemble2_k16", "train")), paths, "train", utt_id, average)
    meta = json.loads((paths.cache_dir("ensemble2_k16", "train") / "meta.json").read_text())
    assert meta["teachers"]["rule"] == "ensemble"
    assert set(meta["teachers"]["shas"]) == {"teacher", "teacher/fold1of2", "teacher/fold2of2"}


def test_fold_teachers_are_units_of_their_own_only_when_a_cache_asks(exp):
    plan = Plan(config(exp, *STUDY))
    assert plan.fold_units == {"teacher/fold1of2": (1, 2), "teacher/fold2of2": (2, 2)}
    assert plan.settings("teacher/fold2of2")["train"]["seed"] == plan.teacher_train["seed"] + 2
    assert plan.upstream("cache/crossfit2_k16/train") == ("teacher/fold1of2", "teacher/fold2of2", "features")
    assert plan.upstream("cache/ensemble2_k16/train")[0] == "teacher"
    assert Plan(config(exp)).fold_units == {}


def test_a_changed_fold_teacher_makes_the_crossfit_cache_stale(exp, tmp_path):
    paths = ExpPaths(exp)
    cfg = config(exp, *STUDY)
    stamp = paths.stamp("teacher/fold1of2")
    original = stamp.read_text()
    try:  # the fold teacher was retrained for other settings
        stamp.write_text(original.replace(json.loads(original)["fingerprint"], "0" * 16))
        with pytest.raises(StaleUpstreamError, match="cache/crossfit2_k16/train needs 'teacher/fold1of2'"):
            StageStamp(cfg, "cache/crossfit2_k16/train")
        StageStamp(cfg, "cache/teacher_k16/train")  # the teacher's own cache is not concerned
    finally:
        stamp.write_text(original)
    checkpoint = paths.checkpoint("teacher_fold1of2")
    shutil.copyfile(checkpoint, tmp_path / "model.pt")
    shutil.copyfile(checksum_path(checkpoint), tmp_path / "model.pt.sha256")
    try:  # other weights (with their checksum) under the same name: the cache's teachers no longer match
        shutil.copyfile(paths.checkpoint("teacher_fold2of2"), checkpoint)
        shutil.copyfile(checksum_path(paths.checkpoint("teacher_fold2of2")), checksum_path(checkpoint))
        spec = Plan(cfg).caches["crossfit2_k16"]
        with pytest.raises(CacheMismatchError, match="teachers: cache has"):
            open_cache(paths, spec, "train", student_subsampling=4, frame_shift_ms=10.0,
                       teachers=load_cache_teachers(cfg.teacher, paths, spec))
    finally:
        shutil.copyfile(tmp_path / "model.pt", checkpoint)
        shutil.copyfile(tmp_path / "model.pt.sha256", checksum_path(checkpoint))
    spec = Plan(cfg).caches["crossfit2_k16"]
    open_cache(paths, spec, "train", student_subsampling=4, frame_shift_ms=10.0,
               teachers=load_cache_teachers(cfg.teacher, paths, spec))


def test_teachers_that_differ_are_refused_in_one_line(exp):
    paths = ExpPaths(exp)
    main = load_bundle(paths.checkpoint("teacher"))
    fold = load_bundle(paths.checkpoint("teacher_fold1of2"))
    more_tokens = tokenizer_from_tokens([*main.tokenizer.tokens, "#"])
    others = {
        "vocabulary": dataclasses.replace(fold, tokenizer=more_tokens),
        "features": dataclasses.replace(fold, frontend={**fold.frontend, "num_mel_bins": 40}),
        "frame rate": dataclasses.replace(fold, model=SimpleNamespace(subsampling_factor=2)),
    }
    for what, other in others.items():
        message = f"teachers teacher and teacher/fold1of2 differ in {what}"
        with pytest.raises(CacheMismatchError, match=message) as e:
            teacher_cache_meta({"teacher": BundleTeacher(main), "teacher/fold1of2": BundleTeacher(other)},
                               main.frontend, "c", 4, 16, {}, "ensemble", "f")
        assert "\n" not in str(e.value)


def test_other_views_make_every_cache_and_system_stale(tmp_path):
    plain, noisy = Plan(config(tmp_path, *STUDY)), Plan(config(tmp_path, *STUDY, "data.noise.snr_db=[0,10]"))
    for unit in ("cache/teacher_k16/train", "cache/crossfit2_k16/train", "student/student_ctc",
                 "student/student_kd_ensemble"):
        assert plain.fingerprint(unit) != noisy.fingerprint(unit), unit


def test_a_k_above_the_vocabulary_is_refused_before_anything_is_written(exp):
    cfg = config(exp, "cache.k=100000")
    plan = Plan(cfg)
    vocab = len(ExpPaths(exp).tokens.read_text().splitlines())
    with pytest.raises(ConfigError, match=f"cache.k=100000 is more than the teacher's {vocab} tokens"):
        cache.build_cache(cfg, plan, plan.caches["teacher_k100000"], "train")
    assert not ExpPaths(exp).cache_dir("teacher_k100000", "train").exists()
