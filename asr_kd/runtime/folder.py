"""An export folder (asr_kd.export.onnx) as a runtime opens it: files present, ``meta.json`` readable,
every graph's SHA-256 equal to the one the export recorded, before any graph is loaded."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from asr_kd.errors import DataError, MissingFileError

__all__ = ["open_export", "sha256"]


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def open_export(export_dir: str | Path, graph: str) -> dict:
    """``meta.json`` of ``export_dir`` once ``graph`` and ``tokens.txt`` match their recorded SHA-256."""
    folder = Path(export_dir)
    for path in (folder / graph, folder / "meta.json", folder / "tokens.txt"):
        if not path.is_file():
            raise MissingFileError(f"{path}: missing; export a model first (`asr-kd stage=export`)")
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        recorded = meta["sha256"]
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"{folder / 'meta.json'}: unreadable or without sha256 ({e}); export again") from None
    for name in (graph, "tokens.txt"):
        if sha256(folder / name) != recorded.get(name):
            raise DataError(f"{folder / name}: SHA-256 differs from meta.json's (damaged or replaced "
                            f"file); export again")
    return meta
