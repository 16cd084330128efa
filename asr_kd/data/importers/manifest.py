"""Generic manifests: JSON lines, or CSV/TSV with a header, one utterance per row.

Fields: ``id``, ``audio``, ``text`` (required; ``text`` not in the ``unlabeled`` split, whose
transcripts, if any, are not read); ``speaker``, ``start``, ``end``, ``duration`` (optional; an
empty cell or ``null`` counts as absent). Relative audio paths resolve against the
manifest's folder; a missing duration comes from the span or the audio header. Our own
``<split>.jsonl`` manifests are read by this importer too.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from asr_kd.data.importers._common import audio_path, make_utterance, parse_float, read_lines, read_text
from asr_kd.data.manifest import UNLABELED, Utterance
from asr_kd.errors import DataError

__all__ = ["import_manifest", "read_any_manifest"]

REQUIRED = ("id", "audio", "text")
#: Those of untranscribed audio.
REQUIRED_UNLABELED = ("id", "audio")


def import_manifest(work_dir: Path, files: Mapping[str, str | os.PathLike]) -> dict[str, list[Utterance]]:
    """Utterances of each split from its manifest file (``files: {train: lists/train.csv, ...}``)."""
    return {
        split: read_any_manifest(Path(path), labelled=split != UNLABELED) for split, path in files.items()
    }


def read_any_manifest(path: Path, labelled: bool = True) -> list[Utterance]:
    """The utterances of one ``.jsonl``/``.json`` (JSON lines), ``.csv`` or ``.tsv`` manifest.

    ``labelled=False``: untranscribed audio; a ``text`` field is not needed, nor read.
    """
    required = REQUIRED if labelled else REQUIRED_UNLABELED
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        rows = _json_rows(path)
    elif suffix in (".csv", ".tsv"):
        rows = _csv_rows(path, "\t" if suffix == ".tsv" else ",", required)
    else:
        raise DataError(f"{path}: unknown manifest format {suffix!r} (expected .jsonl, .csv or .tsv)")
    return [_utterance(row, path.parent, where, required) for where, row in rows]


def _json_rows(path: Path) -> Iterator[tuple[str, dict]]:
    """(``file:line``, row) for each JSON object line; ``null`` values dropped."""
    for lineno, line in read_lines(path):
        where = f"{path}:{lineno}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{where}: not valid JSON ({e.msg})") from e
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
        yield where, {k: v for k, v in row.items() if v is not None}


def _csv_rows(path: Path, delimiter: str, required: tuple[str, ...]) -> Iterator[tuple[str, dict]]:
    """(``file:line``, row) per row of a CSV/TSV file with a header; blank optional cells dropped."""
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""), delimiter=delimiter)
    header = reader.fieldnames or []
    missing = [f for f in required if f not in header]
    if missing:
        expected = ",".join(required)
        raise DataError(
            f"{path}:1: header lacks column(s) {missing}; expected {expected}[,speaker,start,end,duration]"
        )
    for row in reader:
        where = f"{path}:{reader.line_num}"
        if None in row or None in row.values():
            raise DataError(f"{where}: malformed row, expected {len(header)} fields like the header")
        yield where, {k: v for k, v in row.items() if v != "" or k in required}


def _utterance(row: dict, base: Path, where: str, required: tuple[str, ...]) -> Utterance:
    """One row as an utterance; numbers are checked (the audio file is left to validation)."""
    missing = [f for f in required if f not in row]
    if missing:
        raise DataError(f"{where}: missing field(s) {missing}")
    if not str(row["id"]).strip():
        raise DataError(f"{where}: empty utterance id")
    number = {f: parse_float(row[f], where, f) for f in ("start", "end", "duration") if f in row}
    return make_utterance(
        str(row["id"]),
        audio_path(str(row["audio"]), base),
        str(row["text"]) if "text" in required else None,
        speaker=row.get("speaker"),
        start=number.get("start", 0.0),
        end=number.get("end"),
        duration=number.get("duration"),
        source=where,
    )
