"""Kaldi data directories: ``wav.scp`` and ``text``, optional ``utt2spk`` and ``segments``.

``wav.scp`` must list plain audio files (relative paths resolve against the data directory): piped
commands (``sph2pipe ... |``) and extended filenames (``foo.ark:123``, ``foo.wav[0:100]``) are refused;
convert such audio to files first. With ``segments``, utterances are spans (``start``/``end``) of the
recordings; an end of ``-1`` means "to the end of the file". Malformed lines, repeated keys and
utterances without a transcript (or the reverse) are errors naming file and line, as Kaldi's
``validate_data_dir.sh`` would report them; a missing or bad audio file is left to validation.
The ``unlabeled`` split (untranscribed audio) needs no ``text``: one there is not read.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from asr_kd.data.importers._common import audio_path, make_utterance, parse_float, read_lines, split_key
from asr_kd.data.manifest import UNLABELED, Utterance
from asr_kd.errors import DataError, MissingFileError

__all__ = ["import_kaldi", "read_data_dir"]

#: Kaldi extended filenames: ``ark:``/``scp:`` specifiers, archive offsets ``:123``, ranges ``[...]``.
_EXTENDED = re.compile(r"^(ark|scp)[,:]|:\d+$|\[[^\]]*\]$")

#: One table: key -> (value, "file:line" of its entry).
Table = dict[str, tuple[str, str]]


def import_kaldi(work_dir: Path, dirs: Mapping[str, str | os.PathLike]) -> dict[str, list[Utterance]]:
    """Utterances of each split from its Kaldi data directory (``dirs: {train: data/train, ...}``)."""
    return {split: read_data_dir(Path(folder), labelled=split != UNLABELED) for split, folder in dirs.items()}


def read_data_dir(folder: Path, labelled: bool = True) -> list[Utterance]:
    """The utterances of one Kaldi data directory, in the order of ``segments`` (or ``wav.scp``).

    ``labelled=False``: untranscribed audio, whose ``text`` (needed otherwise) is not read.
    """
    if not folder.is_dir():
        raise MissingFileError(f"{folder}: Kaldi data directory does not exist")
    wav_scp = _read_table(folder / "wav.scp")
    recordings = {rec: _audio_path(value, folder, where) for rec, (value, where) in wav_scp.items()}
    spans = (
        _read_segments(folder / "segments", recordings)
        if (folder / "segments").exists()
        else {rec: (rec, 0.0, None, where) for rec, (_, where) in wav_scp.items()}
    )
    texts = _read_table(folder / "text") if labelled else {}
    if labelled:
        _check_same_utterances(spans, texts, folder)
    speakers = _read_table(folder / "utt2spk") if (folder / "utt2spk").exists() else {}
    return [
        make_utterance(
            utt_id,
            recordings[rec],
            texts[utt_id][0] if labelled else None,
            speaker=speakers.get(utt_id, (None, ""))[0],
            start=start,
            end=end,
            source=texts[utt_id][1] if labelled else where,
        )
        for utt_id, (rec, start, end, where) in spans.items()
    ]


def _read_table(path: Path) -> Table:
    """A Kaldi ``KEY VALUE`` table; a repeated key is an error naming both lines."""
    table: Table = {}
    for lineno, line in read_lines(path):
        key, value = split_key(line)
        where = f"{path}:{lineno}"
        if key in table:
            raise DataError(f"{where}: duplicate key {key!r} (first at {table[key][1]})")
        if not value and path.name != "text":
            raise DataError(f"{where}: malformed line, expected 'KEY VALUE', got {line[:60]!r}")
        table[key] = (value, where)
    return table


def _audio_path(value: str, folder: Path, where: str) -> Path:
    """The audio file of one ``wav.scp`` entry; pipes and extended filenames are refused."""
    if value == "-" or value.endswith("|"):
        raise DataError(
            f"{where}: piped wav.scp entry {value!r} is not supported; write the audio to files "
            "(e.g. with sox or ffmpeg) and list their paths"
        )
    if _EXTENDED.search(value):
        raise DataError(
            f"{where}: extended filename {value!r} is not supported; list plain audio file paths"
        )
    return audio_path(value, folder)


def _read_segments(
    path: Path, recordings: Mapping[str, Path]
) -> dict[str, tuple[str, float, float | None, str]]:
    """``segments`` as utterance -> (recording, start, end or ``None``, ``file:line``)."""
    spans = {}
    for utt_id, (value, where) in _read_table(path).items():
        fields = value.split()
        if len(fields) != 3:
            raise DataError(
                f"{where}: malformed line, expected 'UTT RECORDING START END', got {utt_id} {value!r}"
            )
        rec, start, end = (
            fields[0],
            parse_float(fields[1], where, "start"),
            parse_float(fields[2], where, "end"),
        )
        if rec not in recordings:
            raise DataError(f"{where}: recording {rec!r} is not in wav.scp")
        if start < 0 or (end != -1 and end <= start):
            raise DataError(f"{where}: bad segment times start={start} end={end}")
        spans[utt_id] = (rec, start, None if end == -1 else end, where)
    return spans


def _check_same_utterances(spans: Mapping[str, object], texts: Table, folder: Path) -> None:
    """Every utterance needs a transcript and every transcript an utterance (as fix_data_dir.sh ensures)."""
    source = "segments" if (folder / "segments").exists() else "wav.scp"
    for missing, where in ((spans.keys() - texts.keys(), "text"), (texts.keys() - spans.keys(), source)):
        if missing:
            examples = ", ".join(sorted(missing)[:3])
            raise DataError(
                f"{folder / where}: {len(missing)} utterance(s) missing (e.g. {examples}); "
                "run utils/fix_data_dir.sh or complete the file"
            )
