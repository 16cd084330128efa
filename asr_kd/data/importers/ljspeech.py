"""LJSpeech: ``ROOT/metadata.csv`` (``id|text|normalized_text``, no header) and ``ROOT/wavs/ID.wav``."""

from __future__ import annotations

import os
import random
from pathlib import Path

from asr_kd.data.importers._common import audio_path, make_utterance, read_lines
from asr_kd.data.manifest import Utterance
from asr_kd.errors import DataError

__all__ = ["import_ljspeech"]


def import_ljspeech(
    work_dir: Path,
    root: str | os.PathLike,
    held_out: int | float = 0.02,
    seed: int = 0,
    speaker: str = "ljspeech",
) -> dict[str, list[Utterance]]:
    """Splits ``train``/``dev``/``test``: dev and test each get ``held_out`` utterances drawn at random.

    ``held_out`` is a count (int) or a fraction of the corpus (float in (0, 1)). The transcript is the
    normalised column (numbers spelled out) where present, else the raw one.
    """
    root = Path(root)
    metadata = root / "metadata.csv"
    utts = []
    for lineno, line in read_lines(metadata):
        where = f"{metadata}:{lineno}"
        fields = line.split("|")
        if len(fields) not in (2, 3) or not fields[0].strip():
            raise DataError(
                f"{where}: malformed line, expected 'id|text|normalized_text', got {line[:60]!r}"
            )
        utt_id = fields[0].strip()
        text = fields[2] if len(fields) == 3 and fields[2].strip() else fields[1]
        audio = audio_path(Path("wavs") / f"{utt_id}.wav", root)
        utts.append(make_utterance(utt_id, audio, text, speaker=speaker, source=where))
    n = _held_out_count(held_out, len(utts), metadata)
    order = list(range(len(utts)))
    random.Random(seed).shuffle(order)
    parts = {"train": order[2 * n :], "dev": order[n : 2 * n], "test": order[:n]}
    return {split: [utts[i] for i in sorted(idx)] for split, idx in parts.items()}


def _held_out_count(held_out: int | float, total: int, source: Path) -> int:
    """Size of dev (and of test) from a count or a fraction; train must keep at least one utterance."""
    if isinstance(held_out, float):
        if not 0 < held_out < 1:
            raise DataError(f"held_out fraction must lie in (0, 1), got {held_out}")
        n = max(1, round(held_out * total))
    else:
        n = int(held_out)
    if n < 0 or 2 * n >= total:
        raise DataError(f"{source}: cannot hold out 2 x {n} of {total} utterances for dev and test")
    return n
