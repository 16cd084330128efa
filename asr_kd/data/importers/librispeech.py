"""LibriSpeech: ``ROOT/SUBSET/SPEAKER/CHAPTER/SPEAKER-CHAPTER-NNNN.flac`` + ``SPEAKER-CHAPTER.trans.txt``.

Any subsets, grouped into splits as the config says (``train: [train-clean-100, train-clean-360]``).
A missing subset folder or a malformed transcript line is an error; a missing or bad FLAC is left
to validation (rejected, or skipped with ``data.on_error=skip``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from asr_kd.data.importers._common import as_list, audio_path, make_utterance, read_lines, split_key
from asr_kd.data.manifest import Utterance
from asr_kd.errors import DataError, MissingFileError

__all__ = ["import_librispeech"]


def import_librispeech(
    work_dir: Path, root: str | os.PathLike, splits: Mapping[str, Sequence[str] | str]
) -> dict[str, list[Utterance]]:
    """Utterances of each split, gathered from its subset folders (``train: [train-clean-100, ...]``)."""
    root = Path(root)
    return {
        split: [utt for subset in as_list(subsets) for utt in _read_subset(root / subset)]
        for split, subsets in splits.items()
    }


def _read_subset(folder: Path) -> list[Utterance]:
    """Every utterance of one subset folder, chapter by chapter in sorted order."""
    if not folder.is_dir():
        raise MissingFileError(f"{folder}: LibriSpeech subset folder does not exist")
    transcripts = sorted(folder.glob("*/*/*.trans.txt"))
    if not transcripts:
        raise MissingFileError(f"{folder}: no SPEAKER/CHAPTER/SPEAKER-CHAPTER.trans.txt transcript found")
    return [utt for path in transcripts for utt in _read_transcript(path)]


def _read_transcript(path: Path) -> list[Utterance]:
    """The utterances of one chapter transcript; each line is ``SPEAKER-CHAPTER-NNNN TEXT``."""
    prefix = path.name.removesuffix(".trans.txt") + "-"
    speaker = prefix.split("-")[0]
    utts = []
    for lineno, line in read_lines(path):
        where = f"{path}:{lineno}"
        utt_id, text = split_key(line)
        if not utt_id.startswith(prefix):
            raise DataError(f"{where}: malformed line, expected '{prefix}NNNN TEXT', got {line[:60]!r}")
        audio = audio_path(f"{utt_id}.flac", path.parent)
        utts.append(make_utterance(utt_id, audio, text, speaker=speaker, source=where))
    return utts
