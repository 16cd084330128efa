"""Untranscribed audio for the ``unlabeled`` split, from the sources that ``data.unlabeled`` lists.

Each path is read, whatever the corpus, as:

- a folder holding ``wav.scp``: a Kaldi data directory (``segments``, ``utt2spk`` optional; no ``text``);
- any other folder: every audio file under it, recursively (by extension, :data:`AUDIO_SUFFIXES`;
  hidden files left out), its id made of its path relative to the folder (``spk1/ep 2.flac`` ->
  ``spk1-ep_2``; a clash gets ``-2``, ``-3``...);
- a ``.csv``/``.tsv`` file, or a ``.jsonl``/``.json`` one whose first row has ``audio``: our generic
  manifest (:mod:`.manifest`), ``text`` not needed;
- any other file: a Lhotse CutSet (cuts need no supervisions) or RecordingSet (:mod:`.lhotse_io`).

Texts are never read (every utterance has text ``None``). Ids are prefixed ``unl-<name>-`` (``name``:
the path's name, numbered if two paths share one), so sources never clash with each other or with
the corpus's own splits. Bad audio is left to validation, as for any importer.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from asr_kd.data.importers._common import make_utterance, read_lines
from asr_kd.data.importers.kaldi import read_data_dir
from asr_kd.data.importers.lhotse_io import read_cuts
from asr_kd.data.importers.manifest import read_any_manifest
from asr_kd.data.manifest import Utterance
from asr_kd.errors import DataError, MissingFileError

__all__ = ["read_untranscribed", "read_audio_folder", "AUDIO_SUFFIXES"]

log = logging.getLogger(__name__)

#: File name endings taken as audio in a folder (formats that soundfile reads).
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".caf", ".w64",
                  ".rf64", ".sph")  # fmt: skip


def read_untranscribed(paths: Iterable[str | os.PathLike]) -> list[Utterance]:
    """The utterances of every path (see the module docstring), ids prefixed ``unl-<name>-``."""
    utts, names = [], Counter()
    for path in (Path(p).expanduser() for p in paths):
        name = _id_part(path.name.split(".")[0] or path.name)
        names[name] += 1
        prefix = f"unl-{name}-" if names[name] == 1 else f"unl-{name}{names[name]}-"
        found = _read_one(path)
        log.info("unlabeled: %d utterances from %s", len(found), path)
        utts += [dataclasses.replace(u, id=prefix + u.id) for u in found]
    return utts


def _read_one(path: Path) -> list[Utterance]:
    """The utterances of one source: Kaldi directory, audio folder, manifest or Lhotse file."""
    if path.is_dir() and (path / "wav.scp").is_file():
        return read_data_dir(path, labelled=False)
    if path.is_dir():
        return read_audio_folder(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: untranscribed audio (data.unlabeled) does not exist")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv") or (suffix in (".jsonl", ".json") and _our_manifest(path)):
        return read_any_manifest(path, labelled=False)
    return read_cuts(path, labelled=False)[0]


def _our_manifest(path: Path) -> bool:
    """Whether a JSON-lines file is one of our manifests (rows with ``audio``), not a Lhotse one."""
    lines = read_lines(path)
    try:
        first = json.loads(lines[0][1]) if lines else {}
    except json.JSONDecodeError:
        return True  # our reader names the line
    return isinstance(first, dict) and "audio" in first


def read_audio_folder(folder: Path) -> list[Utterance]:
    """One untranscribed utterance per audio file under ``folder`` (recursively, in path order)."""
    if not folder.is_dir():
        raise MissingFileError(f"{folder}: audio folder does not exist")
    visible = [p for p in folder.rglob("*") if p.is_file() and not _hidden(p.relative_to(folder))]
    files = sorted(p for p in visible if p.suffix.lower() in AUDIO_SUFFIXES)
    others = Counter(p.suffix.lower() or p.name for p in visible if p.suffix.lower() not in AUDIO_SUFFIXES)
    if others:
        kinds = ", ".join(f"{kind} {n}" for kind, n in others.most_common(5))
        log.info("unlabeled: %s: left out %d files not named as audio (%s)", folder, others.total(), kinds)
    if not files:
        raise DataError(f"{folder}: no audio file in the folder (names ending {', '.join(AUDIO_SUFFIXES)})")
    utts, taken = [], set()
    for path in files:
        base = _id_part(path.relative_to(folder).with_suffix("").as_posix().replace("/", "-"))
        utt_id, n = base, 1
        while utt_id in taken:
            n += 1
            utt_id = f"{base}-{n}"
        taken.add(utt_id)
        utts.append(make_utterance(utt_id, path.absolute(), None))
    return utts


def _hidden(relative: Path) -> bool:
    """Whether a path or a folder on it is hidden (``.git``, macOS ``._x.wav`` resource forks)."""
    return any(part.startswith(".") for part in relative.parts)


def _id_part(text: str) -> str:
    """``text`` fit for an utterance id: whitespace becomes ``_`` (Kaldi tables split on it)."""
    return re.sub(r"\s+", "_", text.strip())
