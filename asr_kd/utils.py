"""Small helpers shared by every stage: atomic writes, fingerprints, JSON(L) files."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from asr_kd.errors import DataError

__all__ = [
    "atomic_path",
    "write_json",
    "read_json",
    "write_jsonl",
    "read_jsonl",
    "fingerprint",
    "file_hash",
    "path_hash",
]


def _file_mode() -> int:
    """The mode a plainly created file gets under the current umask (``0o666 & ~umask``)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    A killed run therefore never leaves a half-written file under the final name. The file gets
    the mode any file the user writes gets (the umask's), not the private 0600 of a temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, _file_mode())
        os.replace(tmp_path, path)
    except (OSError, RuntimeError) as e:  # torch.save says only "file write failed"
        full = getattr(e, "errno", None) == errno.ENOSPC or (
            "write failed" in str(e) and shutil.disk_usage(path.parent).free < 1 << 20)
        if full:  # name the file meant, not the temporary one (or none)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from e
        raise
    finally:
        tmp_path.unlink(missing_ok=True)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def read_json(path: str | os.PathLike) -> Any:
    """A JSON file's content; a damaged one raises :class:`DataError` naming it."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        why = e.msg if isinstance(e, json.JSONDecodeError) else e.reason
        raise DataError(f"{path}: not valid JSON ({why}), a damaged or cut-off file; delete it and re-run "
                        "the stage that writes it") from None


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    """Write one JSON object per line, atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read a JSON-lines file; a malformed line raises ``ValueError`` naming file and line."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: not valid JSON ({e.msg})") from e
    return rows


def fingerprint(obj: Any) -> str:
    """A short stable hash of any JSON-serialisable object (config dicts, file hashes...)."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def file_hash(path: str | os.PathLike, digits: int = 16, prefix: bytes = b"") -> str:
    """SHA-256 of ``prefix`` then a file's bytes, streamed; its first ``digits`` hex digits (64: all).
    The one file hash of the project (fingerprints, audio keys, cache shards, checksums)."""
    h = hashlib.sha256(prefix)
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()[:digits]


def path_hash(path: str | os.PathLike) -> str:
    """:func:`file_hash` of a file, or a hash of a directory's files, names and contents (a model folder)."""
    if not os.path.isdir(path):
        return file_hash(path)
    names = sorted(os.path.relpath(os.path.join(d, f), path) for d, _, files in os.walk(path) for f in files)
    return fingerprint({name: file_hash(os.path.join(path, name)) for name in names})
