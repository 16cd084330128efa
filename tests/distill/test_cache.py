"""Posterior cache: exact round trip, resume, refusal of mismatched, partial and corrupted caches."""

import numpy as np
import pytest

from asr_kd.distill.cache import (
    CacheIncompleteError,
    CacheMismatchError,
    PosteriorCache,
    ShardWriter,
    cache_meta,
    missing_shards,
    read_index,
    write_index,
    write_meta,
)

VOCAB = ["<blk>", " ", "a", "b", "c", "d"]


def meta(k=3, teacher_sha="t1"):
    frontend = {"backend": "KaldiFbank", "num_mel_bins": 80, "sample_rate": 16000,
                "frame_length_ms": 25.0, "frame_shift_ms": 10.0}
    return cache_meta(teacher_sha=teacher_sha, teacher_config={"d": 1}, vocabulary=VOCAB,
                      frontend=frontend, cmvn_sha="c1", subsampling=4, k=k, views={})


def fake_posteriors(rng, frames, k):
    logp = np.log(rng.dirichlet(np.ones(len(VOCAB)), size=frames))
    idx = np.argsort(-logp, axis=1)[:, :k]
    return np.take_along_axis(logp, idx, 1), idx


def write_cache(folder, k=3, shards=2, per_shard=3, seed=0, parts=1):
    rng = np.random.default_rng(seed)
    write_meta(folder, meta(k))
    write_index(folder, [[PosteriorCache.key(f"utt{s}-{u}", "abc") for u in range(per_shard)]
                         for s in range(shards)], parts)
    truth = {}
    for s in range(shards):
        w = ShardWriter(folder, s, len(VOCAB), k)
        for u in range(per_shard):
            key = PosteriorCache.key(f"utt{s}-{u}", "abc")
            values, idx = fake_posteriors(rng, 5 + u, k or len(VOCAB))
            if k is None:
                values, idx = np.log(rng.dirichlet(np.ones(len(VOCAB)), size=5 + u)), None
            w.add(key, values, idx)
            truth[key] = (values, idx)
        w.close()
    return truth


@pytest.mark.parametrize("k", [3, None])
def test_round_trip_exact_indices_and_fp16_values(tmp_path, k):
    truth = write_cache(tmp_path, k=k)
    cache = PosteriorCache(tmp_path, expected=meta(k))
    assert len(cache) == 6
    for key, (values, idx) in truth.items():
        got_v, got_i = cache[key]
        np.testing.assert_allclose(got_v, values, atol=2e-3, rtol=1e-3)
        expected_idx = np.broadcast_to(np.arange(len(VOCAB)), values.shape) if idx is None else idx
        np.testing.assert_array_equal(got_i, expected_idx)
    if k is not None:
        assert (tmp_path / "shard-00000.idx").stat().st_size == (5 + 6 + 7) * k  # uint8 indices


def test_unknown_key_names_the_utterance(tmp_path):
    write_cache(tmp_path)
    with pytest.raises(KeyError, match="utt9-9:zzz: not in the posterior cache"):
        PosteriorCache(tmp_path)["utt9-9:zzz"]


def test_refuses_cache_of_another_teacher_and_says_what_differs(tmp_path):
    write_cache(tmp_path)
    with pytest.raises(CacheMismatchError, match="teacher_sha: cache has 't1', this run has 't2'"):
        PosteriorCache(tmp_path, expected=meta(teacher_sha="t2"))
    with pytest.raises(CacheMismatchError, match="k: cache has 3, this run has 16"):
        PosteriorCache(tmp_path, expected=meta(k=16))


def test_detects_truncated_and_corrupted_shards(tmp_path):
    write_cache(tmp_path)
    shard = tmp_path / "shard-00001.val"
    data = bytearray(shard.read_bytes())
    data[3] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(CacheMismatchError, match="shard-00001.val: checksum mismatch"):
        PosteriorCache(tmp_path)
    shard.write_bytes(bytes(data[:-4]))
    with pytest.raises(CacheMismatchError, match=r"shard-00001.val: .* \(truncated or missing shard\)"):
        PosteriorCache(tmp_path)


def test_partial_cache_is_refused_in_one_line_naming_the_unfinished_parts(tmp_path):
    """A killed part leaves shards without their done-marker: readers refuse the cache, naming the parts."""
    write_cache(tmp_path, shards=5, parts=2)
    (tmp_path / "shard-00001.json").unlink()
    (tmp_path / "shard-00003.json").unlink()
    with pytest.raises(CacheIncompleteError) as err:
        PosteriorCache(tmp_path)
    assert "\n" not in str(err.value)
    assert "2 of 5 shards (6 of 15 utterances) unfinished, part(s) 1 of 2" in str(err.value)
    assert "cache.parts=2 cache.part=1" in str(err.value)


def test_deleted_index_or_shard_of_other_metadata_is_refused(tmp_path):
    write_cache(tmp_path)
    write_meta(tmp_path, meta(k=3, teacher_sha="t2"))  # a new teacher: the old shards are unfinished
    write_index(tmp_path, [[f"utt{s}-{u}:abc" for u in range(3)] for s in range(2)], parts=1)
    assert missing_shards(tmp_path, read_index(tmp_path)) == [0, 1]
    (tmp_path / "index.json").unlink()
    with pytest.raises(CacheIncompleteError, match="no shard index"):
        PosteriorCache(tmp_path)
