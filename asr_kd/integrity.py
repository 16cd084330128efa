"""Trust in files on disk: recorded checksums, and torch files loaded without running code.

**Checksums.** Every artefact a later stage or a user loads (the files are listed in
asr_kd.paths) is written with a sidecar ``<file>.sha256`` in ``sha256sum`` format
(``sha256sum -c model.pt.sha256`` checks it too) and verified against it before use: a mismatch is
a one-line error naming the file and what to re-run. A file without a sidecar (written by an older
version, or shared without it) is used as it is. Each file is hashed once per process while its
size and mtime stay the same (SHA-256 reads about 1 GB/s here: a demo-size feature store costs
well under a second per stage). Where: asr_kd.stages.base checks the bundles of the units a stage
finds up to date or reads, :class:`asr_kd.features.store.FeatureStore` its files when opened,
:func:`load_torch` every checkpoint.

**No code in checkpoints.** :func:`load_torch` reads with ``torch.load(weights_only=True)``: tensors,
numbers, strings, lists, tuples and dicts only. A file whose pickle names any other Python object
(which unpickling would call) is refused in one line naming it.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from asr_kd.errors import ChecksumError, MissingFileError, UnreadableFileError, UnsafeFileError
from asr_kd.utils import atomic_path, file_hash

__all__ = ["checksum_path", "checksummed", "record_checksum", "verify_checksum", "discard", "load_torch"]

SUFFIX = ".sha256"
_verified: set[tuple[str, int, int, str]] = set()  # (path, size, mtime_ns, digest) hashed this process


def checksum_path(path: str | os.PathLike) -> Path:
    """The sidecar that records ``path``'s SHA-256."""
    path = Path(path)
    return path.with_name(path.name + SUFFIX)


def record_checksum(path: str | os.PathLike) -> None:
    """Write ``path``'s sidecar (atomically) from the file's current bytes."""
    path = Path(path)
    digest = file_hash(path, digits=64)
    with atomic_path(checksum_path(path)) as tmp:
        tmp.write_text(f"{digest}  {path.name}\n", encoding="utf-8")


@contextlib.contextmanager
def checksummed(path: str | os.PathLike) -> Iterator[Path]:
    """:func:`asr_kd.utils.atomic_path` that also records the checksum of what was written. The old
    sidecar goes first, so a kill between the two renames leaves no sidecar rather than a wrong one."""
    checksum_path(path).unlink(missing_ok=True)
    with atomic_path(path) as tmp:
        yield tmp
    record_checksum(path)


def discard(path: str | os.PathLike) -> None:
    """Delete ``path`` and its sidecar."""
    Path(path).unlink(missing_ok=True)
    checksum_path(path).unlink(missing_ok=True)


def verify_checksum(path: str | os.PathLike, rerun: str) -> None:
    """Raise a :class:`ChecksumError` naming ``path`` and ``rerun`` (what to do) if the file's bytes differ
    from its recorded checksum; nothing when it has no sidecar."""
    path, sidecar = Path(path), checksum_path(path)
    if not sidecar.exists():
        return
    recorded = sidecar.read_text(encoding="utf-8").split(maxsplit=1)[:1]
    stat = path.stat()
    key = (str(path.absolute()), stat.st_size, stat.st_mtime_ns, recorded[0] if recorded else "")
    if key in _verified:
        return
    if not recorded or file_hash(path, digits=64) != recorded[0]:
        raise ChecksumError(f"{path}: checksum mismatch with {sidecar.name} (changed or corrupted since "
                            f"it was written); {rerun}")
    _verified.add(key)


def load_torch(path: str | os.PathLike, rerun: str, map_location: str = "cpu") -> Any:
    """``torch.load`` of ``path`` after :func:`verify_checksum`, refusing anything but plain data
    (:class:`UnsafeFileError`); a file torch cannot read is an :class:`UnreadableFileError`."""
    if not os.path.isfile(path):
        raise MissingFileError(f"{path}: no such file")
    verify_checksum(path, rerun)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        named = re.search(r"GLOBAL (\S+)", str(e))
        what = named.group(1) if named else str(e).strip().splitlines()[-1]
        raise UnsafeFileError(f"{path}: refusing to load: it holds Python objects that would run code "
                              f"({what}); use a checkpoint of tensors and plain data") from None
    except (RuntimeError, EOFError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UnreadableFileError(f"{path}: not a readable torch checkpoint (truncated or corrupt: {first}); "
                                  f"{rerun}") from None
