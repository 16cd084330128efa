"""Utterance validation: catch unusable audio and transcripts before they reach a manifest.

Each utterance is checked for: a duplicate id; a transcript that normalisation would empty or would
strip of letters (non-Latin script...); audio that is missing, unreadable, truncated (a WAV whose header
claims more data than the file holds: libsndfile silently reads the shorter part), empty, silent, too
short or too long, or whose duration disagrees with the manifest's (a segment past the file's end).
Audio is read with :func:`asr_kd.data.audio.load_audio` at the training rate, in a thread pool.

A reason reads ``"category: detail"``; :func:`summarize_rejects` counts the categories.
"""

from __future__ import annotations

import dataclasses
import os
import struct
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import soundfile as sf

from asr_kd.data.audio import AudioError, load_audio
from asr_kd.data.manifest import Utterance
from asr_kd.scoring.text import normalize_text
from asr_kd.utils import write_jsonl

__all__ = ["validate_utterances", "lost_characters", "write_rejects", "summarize_rejects", "SILENCE_PEAK"]

#: Peak amplitude (full scale = 1) under which audio counts as silent: about -80 dBFS, 3 LSB of 16-bit PCM.
SILENCE_PEAK = 1e-4
#: Largest accepted gap (s) between the manifest's duration and the audio's.
DURATION_TOLERANCE = 0.1


def lost_characters(text: str) -> list[str]:
    """Letters and digits of ``text`` that :func:`normalize_text` would drop (non-Latin scripts, ``ß``...)."""
    return sorted(c for c in set(text) if c.isalnum() and not normalize_text(c))


def validate_utterances(
    utts: Sequence[Utterance],
    *,
    sample_rate: int,
    max_duration: float,
    min_duration: float = 0.1,
    on_error: str = "raise",
    num_workers: int = 8,
) -> tuple[list[Utterance], list[dict]]:
    """Check every utterance; return the good ones (text normalised) and reject records.

    ``on_error="raise"``: the first problem (in input order) raises ``ValueError`` naming the utterance,
    its audio file and the reason. ``on_error="skip"``: bad utterances are dropped and listed as
    ``{"id", "audio", "reason"}``. A repeated id keeps its first occurrence.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    reasons: list[str | None] = []
    seen: set[str] = set()
    for utt in utts:
        reasons.append(
            "duplicate id: an earlier utterance has this id" if utt.id in seen else _text_problem(utt)
        )
        seen.add(utt.id)

    def audio_problem(i: int) -> str | None:
        return reasons[i] or _audio_problem(utts[i], sample_rate, min_duration, max_duration)

    kept, rejects = [], []
    pool = ThreadPoolExecutor(max_workers=num_workers)
    try:
        for utt, reason in zip(utts, pool.map(audio_problem, range(len(utts))), strict=True):
            if reason is None:
                text = normalize_text(utt.text)
                kept.append(utt if text == utt.text else dataclasses.replace(utt, text=text))
            elif on_error == "raise":
                raise ValueError(f"utterance {utt.id!r} ({utt.audio}): {reason}")
            else:
                rejects.append({"id": utt.id, "audio": utt.audio, "reason": reason})
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return kept, rejects


def _text_problem(utt: Utterance) -> str | None:
    """Why ``utt``'s transcript is unusable, or ``None``."""
    lost = lost_characters(utt.text)
    if lost:
        return f"unsupported characters: normalisation would drop {''.join(lost)!r} from {utt.text!r}"
    if not normalize_text(utt.text):
        return f"empty transcript: nothing left of {utt.text!r} after normalisation"
    return None


def _audio_problem(utt: Utterance, sample_rate: int, min_duration: float, max_duration: float) -> str | None:
    """Why ``utt``'s audio is unusable, or ``None``. Header checks first; the span is read if they pass."""
    path = utt.audio
    if not os.path.isfile(path):
        return "missing audio: file does not exist"
    try:
        info = sf.info(path)
    except (sf.LibsndfileError, RuntimeError) as e:
        return f"unreadable audio: {e}"
    if info.frames == 0:
        return "empty audio: the file holds no samples"
    truncated = _wav_truncation(path)
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
        wav = load_audio(path, sample_rate, utt.start, utt.end)
    except AudioError as e:
        return f"unreadable audio: {str(e).removeprefix(f'{path}: ')}"
    peak = float(np.abs(wav).max())
    if peak < SILENCE_PEAK:
        return f"silent audio: peak amplitude {peak:.1e} < {SILENCE_PEAK:.0e}"
    return None


def _wav_truncation(path: str) -> str | None:
    """A reason if ``path`` is a WAV whose data chunk claims more bytes than the file holds, else ``None``.

    libsndfile reads such a file without complaint, shortened; a copy cut off mid-transfer looks like this.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
            return None
        layout = "<4sI" if head[:4] == b"RIFF" else ">4sI"
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk_id, chunk_size = struct.unpack(layout, f.read(8))
            if chunk_id == b"data":
                available = size - pos - 8
                if chunk_size != 0xFFFFFFFF and chunk_size > available:  # 0xFFFFFFFF: size unknown (streamed)
                    return f"truncated audio: WAV header declares {chunk_size} data bytes, file holds {available}"
                return None
            pos += 8 + chunk_size + (chunk_size & 1)
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
