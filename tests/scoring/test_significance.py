"""The bootstrap (asr_kd.scoring.significance): agreement with kaldialign, coverage, blocking, pairing."""

import time

import kaldialign
import numpy as np
import pytest

from asr_kd.scoring.significance import Bootstrap, resample_counts
from asr_kd.scoring.wer import utterance_errors

VOCAB = [f"w{a}{b}" for a in "abcde" for b in "abcdefghij"]  # no digits: normalisation spells those


def corrupt(rng, words, rate):
    """A hypothesis with substitutions, deletions and insertions at about ``rate`` per word."""
    out = []
    for w in words:
        u = rng.random()
        if u < rate / 2:
            out.append(rng.choice(VOCAB))
        elif u < 3 * rate / 4:
            continue
        else:
            out.append(w)
        if rng.random() < rate / 4:
            out.append(rng.choice(VOCAB))
    return out


@pytest.fixture(scope="module")
def decodes():
    rng = np.random.default_rng(3)
    refs = [list(rng.choice(VOCAB, size=rng.integers(3, 15))) for _ in range(300)]
    hyps_a = [corrupt(rng, r, 0.25) for r in refs]
    hyps_b = [corrupt(rng, r, 0.22) for r in refs]
    return refs, hyps_a, hyps_b


def test_unblocked_interval_and_improvement_agree_with_kaldialign(decodes):
    refs, hyps_a, hyps_b = decodes
    ids = [f"u{i}" for i in range(len(refs))]
    a = utterance_errors(ids, [" ".join(r) for r in refs], [" ".join(h) for h in hyps_a])
    b = utterance_errors(ids, [" ".join(r) for r in refs], [" ".join(h) for h in hyps_b])
    edits = [kaldialign.edit_distance(r, h)["total"] for r, h in zip(refs, hyps_a, strict=True)]
    assert a.errors.tolist() == edits
    ours = Bootstrap({"a": a.errors, "b": b.errors}, a.words, resamples=5000, seed=1)
    theirs = kaldialign.bootstrap_wer_ci(refs, hyps_a, hyps_b, replications=5000, seed=1)
    for name, k in (("a", theirs["system1"]), ("b", theirs["system2"])):
        low, high = ours.interval(name)
        width = high - low
        assert ours.wer[name] == pytest.approx(k["wer"], abs=0.05 * width)
        assert low == pytest.approx(k["ci95min"], abs=0.1 * width)
        assert high == pytest.approx(k["ci95max"], abs=0.1 * width)
    assert 0.05 < theirs["p_s2_improv_over_s1"] < 0.999  # a case that tells the two apart
    assert ours.compare("b", "a").p_improve == pytest.approx(theirs["p_s2_improv_over_s1"], abs=0.04)


def coverage(rng, draws, speakers, per_speaker, spread, blocked, resamples=400):
    """Share of draws whose 95 % interval covers the true WER 0.2, and the mean interval width.

    Each draw: ``speakers`` speakers with an error rate from Beta(mean 0.2, ``spread``: larger is
    narrower; None: all 0.2) and ``per_speaker`` utterances of 4-12 words with binomial errors.
    """
    hits, widths = 0, []
    for draw in range(draws):
        rates = np.full(speakers, 0.2) if spread is None else rng.beta(0.2 * spread, 0.8 * spread, speakers)
        spk = np.repeat(np.arange(speakers), per_speaker)
        words = rng.integers(4, 13, size=len(spk))
        errors = rng.binomial(words, rates[spk])
        low, high = Bootstrap({"s": errors}, words, spk if blocked else None, resamples, seed=draw).interval(
            "s"
        )
        hits += low <= 0.2 <= high
        widths.append(high - low)
    return hits / draws, float(np.mean(widths))


def test_interval_covers_the_true_error_rate_95_percent_of_the_time():
    cover, _ = coverage(
        np.random.default_rng(0), draws=300, speakers=200, per_speaker=1, spread=None, blocked=False
    )
    assert 0.91 <= cover <= 0.99


def test_blocked_bootstrap_covers_when_speakers_differ_and_the_unblocked_one_does_not():
    blocked, w_blocked = coverage(
        np.random.default_rng(1), 200, speakers=40, per_speaker=10, spread=10, blocked=True
    )
    unblocked, w_unblocked = coverage(
        np.random.default_rng(1), 200, speakers=40, per_speaker=10, spread=10, blocked=False
    )
    assert blocked >= 0.88 and unblocked < 0.8
    assert w_blocked > 1.5 * w_unblocked


def test_blocking_changes_little_when_speakers_are_alike():
    rng = np.random.default_rng(2)
    spk = np.repeat(np.arange(50), 10)
    words = rng.integers(4, 13, size=len(spk))
    errors = rng.binomial(words, 0.2)
    w_blocked = np.diff(Bootstrap({"s": errors}, words, spk, 2000).interval("s"))[0]
    w_unblocked = np.diff(Bootstrap({"s": errors}, words, None, 2000).interval("s"))[0]
    assert w_blocked == pytest.approx(w_unblocked, rel=0.25)


def test_paired_comparison_sign_and_symmetry():
    rng = np.random.default_rng(4)
    words = rng.integers(4, 13, size=400)
    worse = rng.binomial(words, 0.25)
    better = np.maximum(worse - rng.binomial(1, 0.5, size=400), 0)
    boot = Bootstrap({"better": better, "worse": worse}, words, resamples=1000, seed=0)
    c = boot.compare("better", "worse")
    assert c.delta == pytest.approx((better.sum() - worse.sum()) / words.sum())
    assert c.delta < 0 and c.ci95[1] < 0 and c.significant
    assert c.p < 0.01 and c.p_improve > 0.99 and c.p_wilcoxon < 0.01
    r = boot.compare("worse", "better")
    assert r.delta == pytest.approx(-c.delta) and r.ci95 == pytest.approx((-c.ci95[1], -c.ci95[0]))
    assert r.p == pytest.approx(c.p) and r.p_improve == pytest.approx(1 - c.p_improve)


def test_identical_systems_are_no_different():
    words = np.arange(1, 101)
    errors = words // 5
    c = Bootstrap({"a": errors, "b": errors.copy()}, words, resamples=200).compare("a", "b")
    assert c.delta == 0 and c.ci95 == (0, 0) and c.p == 1 and c.p_wilcoxon == 1 and not c.significant


def test_resamples_are_seeded_and_draw_every_block_count():
    counts = resample_counts(7, 50, np.random.default_rng(0))
    assert counts.shape == (50, 7) and (counts.sum(1) == 7).all()
    words, errors = np.full(30, 10), np.arange(30) % 4
    one = Bootstrap({"s": errors}, words, resamples=100, seed=5)
    assert np.array_equal(one.samples, Bootstrap({"s": errors}, words, resamples=100, seed=5).samples)
    assert not np.array_equal(one.samples, Bootstrap({"s": errors}, words, resamples=100, seed=6).samples)


def test_bad_inputs_are_refused_with_a_message():
    with pytest.raises(ValueError, match="at least one resample"):
        Bootstrap({"s": [1]}, [3], resamples=0)
    with pytest.raises(ValueError, match="errors have 2 utterances but words 3"):
        Bootstrap({"s": [1, 2]}, [3, 3, 3])
    with pytest.raises(KeyError, match="no system 'x'"):
        Bootstrap({"s": [1]}, [3]).interval("x")


def test_five_systems_on_1000_utterances_in_well_under_five_seconds():
    rng = np.random.default_rng(0)
    words = rng.integers(3, 20, size=1000)
    errors = {f"s{k}": rng.binomial(words, 0.1 + 0.02 * k) for k in range(5)}
    start = time.perf_counter()
    boot = Bootstrap(errors, words, rng.integers(0, 40, size=1000), resamples=1000)
    [boot.interval(s) for s in errors]
    [boot.compare(s, "s0") for s in errors if s != "s0"]
    assert time.perf_counter() - start < 2.0
