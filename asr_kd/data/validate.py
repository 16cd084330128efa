"""Utterance validation: catch unusable audio and transcripts before they reach a manifest.

Each utterance is checked for: a duplicate id; a transcript that is not valid UTF-8, that
normalisation would empty, or would strip of letters (non-Latin script...); audio that is missing,
unreadable, truncated, empty, silent, too short or too long, or whose duration disagrees with the
manifest's (a segment past the file's end). Header checks come first, so a file far longer than
``max_duration`` is never decoded; the others are read once, at their own rate, in a thread pool.

A reject is ``{"id", "audio", "source", "reason"}``; a reason reads ``"category: detail"``, and
:func:`summarize_rejects` counts the categories. :func:`describe` turns a reject into the one-line
message that names the source file and line, the utterance and its audio file.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import soundfile as sf

from asr_kd.data.audio import AudioError, read_span, wav_truncation
from asr_kd.data.manifest import Utterance
from asr_kd.scoring.text import normalize_text
from asr_kd.utils import write_jsonl

__all__ = [
    "validate_utterances",
    "reject",
    "describe",
    "lost_characters",
    "write_rejects",
    "summarize_rejects",
    "SILENCE_PEAK",
]

#: Peak amplitude (full scale = 1) under which audio counts as silent: about -80 dBFS, 3 LSB of 16-bit PCM.
SILENCE_PEAK = 1e-4
#: Largest accepted gap (s) between the manifest's duration and the audio's.
DURATION_TOLERANCE = 0.1
#: What a decoder puts in place of bytes that are not UTF-8 (importers decode with ``errors="replace"``).
REPLACEMENT_CHAR = "\ufffd"


def lost_characters(text: str) -> list[str]:
    """Letters and digits of ``text`` that :func:`normalize_text` would drop (non-Latin scripts, ``ß``...)."""
    return sorted(c for c in set(text) if c.isalnum() and not normalize_text(c))


def reject(utt: Utterance, reason: str) -> dict:
    """The reject record of ``utt``."""
    return {"id": utt.id, "audio": utt.audio, "source": utt.source, "reason": reason}


def describe(record: dict) -> str:
    """``"SOURCE:LINE: utterance 'ID' (AUDIO): REASON"`` (no source part when it is unknown)."""
    where = f"{record['source']}: " if record.get("source") else ""
    return f"{where}utterance {record['id']!r} ({record['audio']}): {record['reason']}"


def validate_utterances(
    utts: Sequence[Utterance],
    *,
    max_duration: float,
    min_duration: float = 0.1,
    on_error: str = "raise",
    num_workers: int = 8,
) -> tuple[list[Utterance], list[dict]]:
    """Check every utterance; return the good ones (text normalised) and the reject records.

    ``on_error="raise"``: the first problem (in input order) raises ``ValueError`` with
    :func:`describe`'s message. ``on_error="skip"``: bad utterances are dropped and returned as
    rejects. A repeated id keeps its first occurrence.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    reasons: list[str | None] = []
    seen: dict[str, Utterance] = {}
    for utt in utts:
        first = seen.setdefault(utt.id, utt)
        reasons.append(_text_problem(utt) if first is utt else f"duplicate id: {_first(first)} has it too")

    def problem(i: int) -> str | None:
        return reasons[i] or _audio_problem(utts[i], min_duration, max_duration)

    kept, rejects = [], []
    pool = ThreadPoolExecutor(max_workers=num_workers)
    try:
        for utt, reason in zip(utts, pool.map(problem, range(len(utts))), strict=True):
            if reason is None:
                text = normalize_text(utt.text)
                kept.append(utt if text == utt.text else dataclasses.replace(utt, text=text))
            elif on_error == "raise":
                raise ValueError(describe(reject(utt, reason)))
            else:
                rejects.append(reject(utt, reason))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return kept, rejects


def _first(utt: Utterance) -> str:
    return f"the utterance at {utt.source}" if utt.source else "an earlier utterance"


def _text_problem(utt: Utterance) -> str | None:
    """Why ``utt``'s transcript is unusable, or ``None``."""
    if REPLACEMENT_CHAR in utt.text:
        return f"invalid UTF-8: the transcript {utt.text!r} holds bytes that are not UTF-8 (shown as \ufffd)"
    lost = lost_characters(utt.text)
    if lost:
        return f"unsupported characters: normalisation would drop {''.join(lost)!r} from {utt.text!r}"
    if not normalize_text(utt.text):
        return f"empty transcript: nothing left of {utt.text!r} after normalisation"
    return None


def _audio_problem(utt: Utterance, min_duration: float, max_duration: float) -> str | None:
    """Why ``utt``'s audio is unusable, or ``None``. Header checks first; the span is read if they pass."""
    path = utt.audio
    if not os.path.isfile(path):
        return "missing audio: file does not exist"
    try:
        info = sf.info(path)
    except (sf.SoundFileError, RuntimeError) as e:
        return f"unreadable audio: {e}"
    if info.frames == 0:
        return "empty audio: the file holds no samples"
    truncated = wav_truncation(path)
    if truncated:
        return truncated
    file_duration = info.frames / info.samplerate
    end = file_duration if utt.end is None else min(utt.end, file_duration)
    duration = end - utt.start
    if duration <= 0:
        return f"empty audio: span starts at {utt.start} s, the file lasts {file_duration:.3f} s"
    if duration > max_duration:
        return f"too long: {duration:.2f} s > max_duration {max_duration} s"
    if duration < min_duration:
        return f"too short: {duration:.3f} s < min_duration {min_duration} s"
    if abs(duration - utt.duration) > DURATION_TOLERANCE:
        return f"duration mismatch: the manifest says {utt.duration:.3f} s, the audio holds {duration:.3f} s"
    try:
        wav, _ = read_span(path, utt.start, utt.end)
    except AudioError as e:
        return f"unreadable audio: {str(e).removeprefix(f'{path}: ')}"
    peak = float(np.abs(wav).max())
    if peak < SILENCE_PEAK:
        return f"silent audio: peak amplitude {peak:.1e} < {SILENCE_PEAK:.0e}"
    return None


def write_rejects(path: str | os.PathLike, rejects: Iterable[dict]) -> None:
    """Write reject records as JSON lines (atomically), for a person to read and fix."""
    write_jsonl(path, rejects)


def summarize_rejects(rejects: Sequence[dict]) -> str:
    """One line: ``"12 utterances rejected: silent audio 7, too long 5"`` (most frequent reason first)."""
    counts = Counter(r["reason"].split(":", 1)[0] for r in rejects)
    detail = ", ".join(f"{category} {n}" for category, n in counts.most_common())
    return f"{len(rejects)} utterance{'s' if len(rejects) != 1 else ''} rejected" + (
        f": {detail}" if detail else ""
    )
