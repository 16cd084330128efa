"""The manifest: one JSON line per utterance, the interface between data preparation and the rest.

Format (``<exp_dir>/data/<split>.jsonl``), one object per line::

    {"id": "spk1-0001", "audio": "/abs/path.wav", "duration": 2.31,
     "text": "set an alarm for seven", "speaker": "spk1", "start": 0.0, "end": null,
     "source": "/corpus/lists/train.csv:12"}

``audio`` is an absolute path (or relative to the manifest's folder); ``start``/``end`` (seconds,
optional) select a segment of a longer recording, as Kaldi ``segments`` and Lhotse cuts do.
``duration`` is the duration of the utterance (the segment, not the whole file). ``text`` is
``null`` (or absent) for untranscribed audio: the ``unlabeled`` split, which only teacher targets
supervise (asr_kd.distill.objectives); every other split must carry a transcript. ``source``
(optional) is where an importer read the utterance (``file:line``), so that an error about it can
point there; it takes no part in comparing utterances.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from asr_kd.errors import DataError
from asr_kd.utils import file_hash, fingerprint, read_jsonl, write_jsonl

__all__ = ["Utterance", "read_manifest", "write_manifest", "corpus_hash", "audio_sha", "check_id",
           "UNLABELED"]

#: The split of untranscribed audio (``data/unlabeled.jsonl``): the one split whose texts are ``None``.
UNLABELED = "unlabeled"


@dataclass(frozen=True)
class Utterance:
    """One utterance: an audio span and its transcript (None: untranscribed audio)."""

    id: str
    audio: str
    duration: float
    text: str | None
    speaker: str | None = None  # None: not known
    start: float = 0.0
    end: float | None = None
    source: str | None = field(default=None, compare=False)

    def to_dict(self) -> dict:
        return asdict(self)


def check_id(utt_id: str, where: str) -> None:
    """Refuse an utterance id that could not be a file name (ids name the audio of augmented views)."""
    if utt_id in ("", ".", "..") or any(c in utt_id for c in "/\\") or not utt_id.isprintable():
        raise DataError(f"{where}: utterance id {utt_id!r} cannot name a file (no '/', '\\', control "
                        "characters, '.' or '..')")


def read_manifest(path: str | os.PathLike) -> list[Utterance]:
    """Read a manifest; relative audio paths resolve against the manifest's folder.

    Raises ``DataError`` naming the file and line for a row that lacks a field or repeats an id;
    ``text`` may be absent or null (untranscribed audio: whether a split may hold it is the
    caller's rule).
    """
    path = Path(path)
    utts, seen = [], set()
    fields = set(Utterance.__dataclass_fields__)
    for lineno, row in enumerate(read_jsonl(path), 1):
        if not isinstance(row, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
        missing = {"id", "audio", "duration"} - row.keys()
        if missing:
            raise DataError(f"{path}:{lineno}: missing field(s) {sorted(missing)}")
        wrong = [k for k in ("id", "audio") if not isinstance(row[k], str)]
        wrong += [k for k in ("duration", "start", "end") if row.get(k) is not None
                  and (isinstance(row[k], bool) or not isinstance(row[k], (int, float)))]
        if wrong:
            raise DataError(f"{path}:{lineno}: wrong type of {wrong} (ids, paths: strings; times: numbers)")
        check_id(row["id"], f"{path}:{lineno}")
        if row["id"] in seen:
            raise DataError(f"{path}:{lineno}: duplicate utterance id {row['id']!r}")
        seen.add(row["id"])
        row = {"text": None, **{k: v for k, v in row.items() if k in fields}}
        if not os.path.isabs(row["audio"]):
            row["audio"] = str((path.parent / row["audio"]).resolve())
        utts.append(Utterance(**row))
    return utts


def write_manifest(path: str | os.PathLike, utts: Iterable[Utterance]) -> None:
    """Write utterances as JSON lines, atomically."""
    write_jsonl(path, (u.to_dict() for u in utts))


def audio_sha(utt: Utterance) -> str:
    """Content hash of an utterance's audio (file bytes plus the span): the features' and caches' key."""
    return file_hash(utt.audio, prefix=f"{utt.start}:{utt.end}:".encode())


def corpus_hash(splits: Mapping[str, Sequence[Utterance]]) -> str:
    """A hash of every split's utterances (sorted by id) and their audio files' bytes, not their
    paths: the same corpus in any folder gives the same hash, a changed clip or transcript another."""
    audio_hash = functools.cache(file_hash)  # segments of one recording share its file
    rows = {
        split: [[u.id, u.text, u.speaker, u.duration, u.start, u.end, audio_hash(u.audio)] for u in utts]
        for split, utts in splits.items()
    }
    return fingerprint({split: sorted(r, key=lambda row: row[0]) for split, r in rows.items()})
