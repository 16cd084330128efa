"""The teacher posterior cache: top-k frame log-posteriors, sharded, checksummed, memory-mapped.

Layout of one cache, ``<exp_dir>/cache/<name>/<split>/`` (``<name>``: ``teacher_k16``,
``teacher_full``, ``crossfit4_k16``, ``ensemble4_k16``...; one folder per split the systems using
it train on)::

    meta.json            what made the cache (see :func:`cache_meta`: the teacher(s)' hash, config,
                         vocabulary and frame shift, the merge to the student's rate, features, k,
                         the split's augmented views), checked before training, and its ``layout``
                         (``shard_utts``): a cache of another layout is rebuilt, never mixed
    shard-NNNNN.val      float16 log-posteriors, shape (frames, K) (K = V when ``k`` is null)
    shard-NNNNN.idx      token ids of those values, uint8 (V <= 256) or uint16, shape (frames, K);
                         absent for full posteriors, where column j is token j
    shard-NNNNN.json     {"utts": {key: [offset, frames]}, "frames": int, "sha256": {file: hex}}
                         written last: the shard's done-marker
    index.json           the shards the finished cache holds: {"utterances": int, "parts": int,
                         "shards": [{"utts": int, "keys": hash of the shard's keys}]} (:func:`write_index`)
    summary.json         utterances, frames, bytes_per_frame, size_bytes, k, x_realtime

Entries are keyed by content, ``"<utt id>:<audio sha>"`` (:meth:`PosteriorCache.key`): a changed
recording gets a new key instead of silently reusing stale targets. The mass outside the top k is
``1 - sum(exp(values))`` per frame, so it is not stored (see asr_kd.distill.loss).

The shards are a map: ``stage=cache cache.part=I cache.parts=N`` writes shards ``s`` with
``s % N == I`` (:func:`shard_part`). A shard is finished when its json exists and holds the keys
``index.json`` expects; :func:`missing_shards` lists the others and :class:`PosteriorCache` refuses a
cache with any, naming their parts (:class:`CacheIncompleteError`). ``parts`` changes no byte of
``meta.json`` or of a shard: a cache made in N parts is the one made in 1.

A cache combining several teachers (cross-fitted or an ensemble, asr_kd.stages.cache) holds the
average of their full distributions (probability space), then its log and top k; its meta.json
adds ``teachers`` (the rule, each teacher's checkpoint hash, the folds file's hash) and its
``teacher_sha`` is a hash of those.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from asr_kd.distill.bridge import merge_factor
from asr_kd.errors import MissingFileError, UserError
from asr_kd.models.adapters import TeacherAdapter
from asr_kd.utils import atomic_path, file_hash, fingerprint, read_json, write_json

__all__ = ["FORMAT_VERSION", "cache_meta", "teacher_cache_meta", "ShardWriter", "PosteriorCache",
           "CacheMismatchError", "CacheIncompleteError", "write_meta", "check_meta", "shard_name",
           "shard_part", "write_index", "read_index", "missing_shards", "check_complete"]

FORMAT_VERSION = 1


class CacheMismatchError(UserError, ValueError):
    """The cache was made by another teacher, feature set or vocabulary, or a shard is damaged."""


class CacheIncompleteError(UserError, RuntimeError):
    """Shards of the cache are missing or unfinished: a part of ``stage=cache`` has not run to its end."""


def cache_meta(
    *,
    teacher_sha: str,
    teacher_config: dict,
    vocabulary: list[str],
    frontend: dict,
    cmvn_sha: str,
    subsampling: int,
    k: int | None,
    views: dict,
    teacher_frame_shift_ms: float | None = None,
) -> dict:
    """Everything a student must agree with to use the cache (creation time and layout excluded);
    ``views``: the augmented views of the split (asr_kd.data.views; {} for none).

    The cache holds posteriors at the student's rate, ``frame_shift_ms`` (the features' shift times
    the student's ``subsampling``); a teacher with shorter frames (``teacher_frame_shift_ms``; default:
    the same) had each ``merge`` of its frames merged into one (asr_kd.distill.bridge).
    """
    frame_shift_ms = frontend["frame_shift_ms"] * subsampling
    teacher_frame_shift_ms = teacher_frame_shift_ms or frame_shift_ms
    return {
        "format_version": FORMAT_VERSION,
        "teacher_sha": teacher_sha,
        "teacher_config": teacher_config,
        "vocabulary": vocabulary,
        "frontend": frontend,
        "cmvn_sha": cmvn_sha,
        "subsampling": subsampling,
        "frame_shift_ms": frame_shift_ms,
        "teacher_frame_shift_ms": teacher_frame_shift_ms,
        "merge": merge_factor(teacher_frame_shift_ms, frame_shift_ms),
        "k": k,
        "views": views,
    }


def teacher_cache_meta(
    teachers: dict[str, TeacherAdapter], frontend: dict, cmvn_sha: str, subsampling: int, k: int | None,
    views: dict, rule: str = "single", folds_sha: str | None = None,
) -> dict:
    """The metadata a cache made by ``teachers`` (unit -> adapter: the teacher, or the teachers a
    ``crossfit``/``ensemble`` cache combines by ``rule``, with the hash of the folds file) must carry,
    for a student reading ``frontend`` features (CMVN file of hash ``cmvn_sha``) and subsampling them
    ``subsampling`` times. Combined teachers must share vocabulary, input, frame rate, features and
    CMVN (else one line naming both)."""
    (first, teacher), *others = teachers.items()
    for name, other in others:
        for what, value in _ALIKE.items():
            if value(teacher) != value(other):
                raise CacheMismatchError(f"teachers {first} and {name} differ in {what} "
                                         f"({_short(value(teacher))} vs {_short(value(other))}); "
                                         f"a {rule} cache needs them alike")
    meta = cache_meta(
        teacher_sha=teacher.sha,
        teacher_config=_described(teacher),
        vocabulary=teacher.tokens,
        frontend={key: v for key, v in frontend.items() if key != "fingerprint"},
        cmvn_sha=cmvn_sha,
        subsampling=subsampling,
        k=k,
        views=views,
        teacher_frame_shift_ms=teacher.frame_shift_ms,
    )
    if rule == "single":
        return meta
    combined = {"rule": rule, "shas": {n: t.sha for n, t in teachers.items()}, "folds_sha": folds_sha}
    configs = {n: _described(t) for n, t in teachers.items()}
    return {**meta, "teacher_sha": fingerprint(combined), "teacher_config": configs, "teachers": combined}


def _described(teacher: TeacherAdapter) -> dict:
    return {"architecture": teacher.architecture, "input": teacher.input, **teacher.config}


def _bundle_part(teacher: TeacherAdapter, part: str):
    """A bundle teacher's own ``frontend`` or CMVN statistics (None for a pretrained teacher)."""
    bundle = getattr(teacher, "bundle", None)
    if bundle is None:
        return None
    if part == "frontend":
        return {k: v for k, v in bundle.frontend.items() if k != "fingerprint"}
    return bundle.cmvn.to_dict()


#: What teachers combined in one cache must agree on.
_ALIKE = {
    "vocabulary": lambda t: t.tokens,
    "input": lambda t: t.input,
    "frame rate": lambda t: t.frame_shift_ms,
    "features": lambda t: _bundle_part(t, "frontend"),
    "CMVN": lambda t: _bundle_part(t, "cmvn"),
}


def _index_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint8 if vocab_size <= 256 else np.uint16)


def shard_name(shard: int) -> str:
    return f"shard-{shard:05d}"


def shard_part(shard: int, parts: int) -> int:
    """The part (of ``cache.parts``) that writes ``shard``."""
    return shard % parts


def _keys_hash(keys) -> str:
    return fingerprint(sorted(keys))


def _meta_hash(folder: Path) -> str:
    """The hash of ``meta.json`` (creation time excluded): a shard made under other metadata is unfinished."""
    return fingerprint({k: v for k, v in read_json(Path(folder) / "meta.json").items() if k != "created"})


def write_index(folder: Path, shards: list[list[str]], parts: int) -> None:
    """Record which keys each shard of the finished cache holds, after ``meta.json`` (every part
    writes the same one)."""
    write_json(Path(folder) / "index.json", {
        "utterances": sum(len(keys) for keys in shards), "parts": parts, "meta": _meta_hash(folder),
        "shards": [{"utts": len(keys), "keys": _keys_hash(keys)} for keys in shards]})


def read_index(folder: Path) -> dict:
    path = Path(folder) / "index.json"
    if not path.exists():
        raise CacheIncompleteError(f"{folder}: no shard index (index.json: deleted, or a cache made before "
                                   "it existed); re-run `asr-kd stage=cache`")
    return read_json(path)


def missing_shards(folder: Path, index: dict) -> list[int]:
    """The shards of ``index`` without a done-marker holding the keys the index expects, written
    under the same metadata."""
    missing = []
    for shard, expected in enumerate(index["shards"]):
        path = Path(folder) / f"{shard_name(shard)}.json"
        info = read_json(path) if path.exists() else {}
        if info.get("meta") != index["meta"] or _keys_hash(info["utts"]) != expected["keys"]:
            missing.append(shard)
    return missing


def check_complete(folder: Path, index: dict, missing: list[int]) -> None:
    """Raise :class:`CacheIncompleteError` naming the parts whose shards are ``missing`` (one line)."""
    if not missing:
        return
    parts = index["parts"]
    by_part = sorted({shard_part(s, parts) for s in missing})
    lost = sum(index["shards"][s]["utts"] for s in missing)
    listed = ",".join(map(str, by_part))
    rerun = (f"`asr-kd stage=cache cache.parts={parts} cache.part={listed}`" if len(by_part) == 1 else
             f"`asr-kd stage=cache cache.parts={parts} 'cache.part={listed}' --multirun`")
    raise CacheIncompleteError(
        f"{folder}: partial cache, {len(missing)} of {len(index['shards'])} shards ({lost} of "
        f"{index['utterances']} utterances) unfinished, part(s) {', '.join(map(str, by_part))} of {parts} "
        f"(shards {', '.join(map(str, missing[:5]))}{'...' if len(missing) > 5 else ''}); run {rerun}")


class ShardWriter:
    """Writes one shard of the cache in ``folder`` (its ``meta.json`` written first): :meth:`add` each
    utterance's top-k, then :meth:`close` to publish it."""

    def __init__(self, folder: str | os.PathLike, shard: int, vocab_size: int, k: int | None):
        self.folder, self.name = Path(folder), shard_name(shard)
        self.meta = _meta_hash(self.folder)
        self.full = k is None
        self.index_dtype = _index_dtype(vocab_size)
        self.values: list[np.ndarray] = []
        self.indices: list[np.ndarray] = []
        self.utts: dict[str, list[int]] = {}
        self.frames = 0

    def add(self, key: str, values: np.ndarray, indices: np.ndarray | None) -> None:
        """``values`` (T, K) log-posteriors (sorted or not), ``indices`` (T, K) token ids."""
        self.utts[key] = [self.frames, int(values.shape[0])]
        self.frames += values.shape[0]
        self.values.append(values.astype(np.float16))
        if not self.full:
            self.indices.append(indices.astype(self.index_dtype))

    def close(self) -> None:
        sha = {}
        parts = [(".val", self.values)] + ([] if self.full else [(".idx", self.indices)])
        for suffix, arrays in parts:
            path = self.folder / f"{self.name}{suffix}"
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as f:
                    for a in arrays:
                        f.write(np.ascontiguousarray(a).tobytes())
                sha[path.name] = file_hash(tmp, digits=64)
        info = {"utts": self.utts, "frames": self.frames, "sha256": sha, "meta": self.meta}
        write_json(self.folder / f"{self.name}.json", info)


class PosteriorCache:
    """Read access: ``cache[key] -> (values (T, K) float32, indices (T, K) int64)``.

    Opening checks the format version and, with ``expected``, every field of :func:`cache_meta`
    (a :class:`CacheMismatchError` lists what differs), that every shard of ``index.json`` is
    finished (:func:`check_complete`) and, with ``verify=True``, each shard's SHA-256, so a partial,
    truncated or corrupted cache is named before the first training step.
    """

    def __init__(self, folder: str | os.PathLike, expected: dict | None = None, verify: bool = True):
        self.folder = Path(folder)
        meta_path = self.folder / "meta.json"
        if not meta_path.exists():
            raise MissingFileError(f"{self.folder}: no posterior cache; run `asr-kd stage=cache` first")
        self.meta = read_json(meta_path)
        if expected is not None:
            check_meta(self.meta, expected, self.folder)
        self.k = self.meta["k"]
        self.vocab_size = len(self.meta["vocabulary"])
        self.width = self.vocab_size if self.k is None else self.k
        self._entries: dict[str, tuple[int, int, int]] = {}
        self._values: dict[int, np.memmap] = {}
        self._indices: dict[int, np.memmap] = {}
        index = read_index(self.folder)
        check_complete(self.folder, index, missing_shards(self.folder, index))
        for shard in range(len(index["shards"])):
            info = read_json(self.folder / f"{shard_name(shard)}.json")
            self._open_shard(shard, info, verify)
            for key, (offset, frames) in info["utts"].items():
                self._entries[key] = (shard, offset, frames)

    def _open_shard(self, shard: int, info: dict, verify: bool) -> None:
        shape = (info["frames"], self.width)
        files = {".val": (np.float16, self._values)}
        if self.k is not None:
            files[".idx"] = (_index_dtype(self.vocab_size), self._indices)
        for suffix, (dtype, table) in files.items():
            path = self.folder / f"{shard_name(shard)}{suffix}"
            expected_size = shape[0] * shape[1] * np.dtype(dtype).itemsize
            size = path.stat().st_size if path.exists() else -1
            if size != expected_size:
                raise CacheMismatchError(
                    f"{path}: {size} bytes, expected {expected_size} (truncated or missing shard);"
                    " delete it and re-run `asr-kd stage=cache`"
                )
            if verify and file_hash(path, digits=64) != info["sha256"][path.name]:
                raise CacheMismatchError(
                    f"{path}: checksum mismatch (corrupted shard); delete it and re-run `asr-kd stage=cache`"
                )
            table[shard] = np.memmap(path, dtype=dtype, mode="r", shape=shape) if shape[0] else np.zeros(
                shape, dtype
            )

    @staticmethod
    def key(utt_id: str, audio_sha: str) -> str:
        return f"{utt_id}:{audio_sha}"

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    @property
    def frames(self) -> int:
        return sum(e[2] for e in self._entries.values())

    def __getitem__(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        try:
            shard, offset, frames = self._entries[key]
        except KeyError:
            raise KeyError(
                f"{key}: not in the posterior cache at {self.folder} (new or changed audio); "
                "re-run `asr-kd stage=cache`"
            ) from None
        values = np.asarray(self._values[shard][offset : offset + frames], dtype=np.float32)
        if self.k is None:
            indices = np.broadcast_to(np.arange(self.width), values.shape)
        else:
            indices = self._indices[shard][offset : offset + frames]
        return values, np.asarray(indices, dtype=np.int64)


def check_meta(found: dict, expected: dict, where: Path | str) -> None:
    """Raise :class:`CacheMismatchError` naming every field where ``found`` differs from ``expected``."""
    diffs = [
        f"{name}: cache has {_short(found.get(name))}, this run has {_short(value)}"
        for name, value in expected.items()
        if found.get(name) != value
    ]
    if diffs:
        raise CacheMismatchError(
            f"posterior cache {where} does not match this run:\n  " + "\n  ".join(diffs)
            + "\nre-run `asr-kd stage=cache force=true` or point distill at the right cache"
        )


def _short(value) -> str:
    text = repr(value)
    return text if len(text) < 80 else text[:77] + "..."


def write_meta(folder: Path, meta: dict) -> None:
    write_json(folder / "meta.json", {**meta, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
