"""Helpers every importer shares: text reading, audio paths, numbers, utterance construction."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import soundfile as sf

from asr_kd.data.manifest import Utterance, check_id
from asr_kd.data.validate import REPLACEMENT_CHAR, lost_characters
from asr_kd.errors import DataError, MissingFileError
from asr_kd.scoring.text import normalize_text, spelled_characters

__all__ = [
    "read_text",
    "read_lines",
    "split_key",
    "as_list",
    "parse_float",
    "audio_path",
    "file_duration",
    "transcript",
    "speaker_name",
    "make_utterance",
]


def read_text(path: str | os.PathLike) -> str:
    """The whole of a text file as UTF-8, a leading BOM dropped; ``FileNotFoundError`` if it is missing.

    Bytes that are not valid UTF-8 become U+FFFD instead of failing the whole file: the one utterance
    whose transcript holds them is then rejected by validation (or skipped), naming its line.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: file does not exist")
    return path.read_bytes().decode("utf-8", errors="replace").removeprefix("\ufeff")


def read_lines(path: str | os.PathLike) -> list[tuple[int, str]]:
    """Non-blank lines of a text file (as :func:`read_text`) with their 1-based numbers, for messages."""
    lines = read_text(path).split("\n")
    return [(n, line.rstrip("\r")) for n, line in enumerate(lines, 1) if line.strip()]


def split_key(line: str) -> tuple[str, str]:
    """Split a ``KEY REST OF LINE`` line (Kaldi tables, LibriSpeech transcripts) into key and rest."""
    parts = line.split(maxsplit=1)
    return parts[0], parts[1].strip() if len(parts) > 1 else ""


def as_list(value: str | os.PathLike | Iterable[str]) -> list[str]:
    """A single name or a list of names, as a list (configs may give either)."""
    return [str(value)] if isinstance(value, str | os.PathLike) else [str(v) for v in value]


def parse_float(value: object, where: str, field: str) -> float:
    """``float(value)``, or a ``ValueError`` naming the place and the field."""
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise DataError(f"{where}: {field} is not a number: {value!r}") from None


def audio_path(name: str | os.PathLike, base: str | os.PathLike) -> Path:
    """Absolute path of an audio file; a relative ``name`` resolves against ``base``.

    Its existence is not checked here: validation rejects (or skips) a missing file, naming the line.
    """
    return Path(os.path.abspath(Path(base) / Path(name).expanduser()))


def file_duration(path: str | os.PathLike) -> float:
    """Duration of an audio file from its header; 0.0 when missing or unreadable (validation rejects it)."""
    try:
        return sf.info(str(path)).duration
    except (sf.SoundFileError, RuntimeError):
        return 0.0


def transcript(raw: str | None) -> str | None:
    """``normalize_text(raw)``, unless ``raw`` holds what validation must judge first (``None``: none).

    That is: a letter or digit normalisation would drop, undecodable bytes (U+FFFD), or digits and
    symbols read as words (which ``data.numbers`` spells out or rejects). Then ``raw`` is kept as is,
    so that :func:`asr_kd.data.validate.validate_utterances` rejects (or skips) the utterance with a
    reason, or normalises it, instead of silently training on a transcript with words missing.
    """
    if raw is None:
        return None
    if REPLACEMENT_CHAR in raw or lost_characters(raw) or spelled_characters(raw):
        return raw.strip()
    return normalize_text(raw)


def speaker_name(value: object) -> str | None:
    """A speaker label; ``None``, blank or ``"None"`` (a ``str(None)``) mean none: ``None`` (null)."""
    name = "" if value is None else str(value).strip()
    return None if name in ("", "None") else name


def make_utterance(
    utt_id: str,
    audio: Path,
    raw_text: str | None,
    *,
    speaker: str | None = None,
    start: float = 0.0,
    end: float | None = None,
    duration: float | None = None,
    source: str | None = None,
) -> Utterance:
    """An utterance over ``audio[start:end]``; a missing duration comes from the span or the file header.

    ``source`` is where it was read (``file:line``), for messages about it. A missing speaker
    (``None``, blank) is ``None``; so is the text of untranscribed audio (``raw_text=None``).
    """
    check_id(utt_id, source or str(audio))
    if duration is None:
        duration = end - start if end is not None else max(file_duration(audio) - start, 0.0)
    return Utterance(
        id=utt_id,
        audio=str(audio),
        duration=round(duration, 6),
        text=transcript(raw_text),
        speaker=speaker_name(speaker),
        start=start,
        end=end,
        source=source,
    )
