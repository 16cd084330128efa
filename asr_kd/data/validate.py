"""Utterance validation: catch unusable audio and transcripts before they reach a manifest.

Each utterance is checked for: a duplicate id; a transcript that is not valid UTF-8, that
normalisation would empty, or would strip of letters (non-Latin script...), or (with
``numbers="reject"``) that holds digits or symbols read as words (``%&+$£``), which the default
``numbers="spell"`` writes out in words (:mod:`asr_kd.scoring.text`); audio that is missing,
unreadable, truncated, empty, silent, too short or too long, or whose duration disagrees with the
manifest's (a segment past the file's end). Header checks come first, so a file far longer than
``max_duration`` is never decoded; the others are read once, at their own rate, in a thread pool.
Untranscribed audio (the ``unlabeled`` split, ``labelled=False``) gets the same id and audio checks
and no text check; any transcript it came with is dropped (text ``None``), as that split has none.

:func:`validate_corpus` validates every split and then checks the corpus as a whole for leakage:
an utterance id, or audio with the same content, in two splits. The content hash is taken of the
samples decoded by that same read (so a copy in another file or format is caught, and two segments
of one recording are not confused). Leakage is a bug of the corpus, not of one utterance: it always
raises, whatever ``on_error`` says, naming both places.

A reject is ``{"id", "audio", "source", "reason"}``; a reason reads ``"category: detail"``, and
:func:`summarize_rejects` counts the categories. :func:`describe` turns a reject into the one-line
message that names the source file and line, the utterance and its audio file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import soundfile as sf

from asr_kd.data.audio import AudioError, read_span, wav_truncation
from asr_kd.data.manifest import UNLABELED, Utterance
from asr_kd.errors import ConfigError, DataError
from asr_kd.scoring.text import normalize_text, spelled_characters
from asr_kd.utils import write_jsonl

__all__ = [
    "validate_utterances",
    "validate_corpus",
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
#: What ``numbers`` may say: spell digits and word symbols out (``asr_kd.scoring.text``), or reject them.
NUMBER_POLICIES = ("spell", "reject")

log = logging.getLogger(__name__)


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
    numbers: str = "spell",
    num_workers: int = 8,
    labelled: bool = True,
) -> tuple[list[Utterance], list[dict]]:
    """Check every utterance; return the good ones (text normalised) and the reject records.

    ``on_error="raise"``: the first problem (in input order) raises ``ValueError`` with
    :func:`describe`'s message. ``on_error="skip"``: bad utterances are dropped and returned as
    rejects. A repeated id keeps its first occurrence. ``numbers``: see the module docstring.
    ``labelled=False``: untranscribed audio (no text check; texts become ``None``).
    """
    kept, rejects, _ = _validate(utts, max_duration, min_duration, on_error, numbers, num_workers, labelled)
    return kept, rejects


def validate_corpus(
    splits: Mapping[str, Sequence[Utterance]],
    *,
    max_duration: float,
    min_duration: float = 0.1,
    on_error: str = "raise",
    numbers: str = "spell",
    num_workers: int = 8,
) -> tuple[dict[str, list[Utterance]], list[dict]]:
    """:func:`validate_utterances` on every split, then a check for leakage between the splits.

    Returns the kept utterances of each split and the reject records (with their ``split``). An id
    in two splits is refused before any audio is read; audio of the same content in two splits once
    all is read. Either raises ``ValueError`` naming both source lines, whatever ``on_error`` says.
    The ``unlabeled`` split is untranscribed audio (``labelled=False``); every other needs transcripts.
    """
    by_id: dict[str, dict[str, Utterance]] = {split: {} for split in splits}
    for split, utts in splits.items():
        for utt in utts:
            by_id[split].setdefault(utt.id, utt)
    _raise_leaks(_shared(by_id), "id")
    kept, rejects, digests = {}, [], {}
    for split, utts in splits.items():
        kept[split], bad, digests[split] = _validate(
            utts, max_duration, min_duration, on_error, numbers, num_workers, split != UNLABELED
        )
        rejects += [{"split": split, **r} for r in bad]
    _raise_leaks(_shared(digests), "audio")
    return kept, rejects


def _shared(keyed: Mapping[str, Mapping[str, Utterance]]) -> list[tuple[str, Utterance, str, Utterance]]:
    """``(split, utt, other split, other utt)`` for each key of an utterance of one split that an
    earlier split holds too (its first utterance with that key)."""
    first: dict[str, tuple[str, Utterance]] = {}
    pairs = []
    for split, by_key in keyed.items():
        for key, utt in by_key.items():
            if key in first:
                pairs.append((*first[key], split, utt))
        for key, utt in by_key.items():
            first.setdefault(key, (split, utt))
    return pairs


def _raise_leaks(pairs: list[tuple[str, Utterance, str, Utterance]], kind: str) -> None:
    """Raise ``ValueError`` for the first pair (each logged), naming both places."""
    messages = []
    for split_a, a, split_b, b in pairs:
        where = f"{a.source or f'split {split_a!r}'} and {b.source or f'split {split_b!r}'}"
        if kind == "id":
            what = f"utterance {a.id!r} is in split {split_a!r} and in split {split_b!r}"
        else:
            what = (
                f"utterances {a.id!r} ({split_a}, {_span(a)}) and {b.id!r} ({split_b}, {_span(b)}) "
                "have the same audio"
            )
        messages.append(f"{where}: {what}: leakage between splits; keep it in one split only")
    for message in messages:
        log.error("%s", message)
    if messages:
        more = f" (and {len(messages) - 1} more, listed above)" if len(messages) > 1 else ""
        raise DataError(messages[0] + more)


def _span(utt: Utterance) -> str:
    """``"a.wav"``, or ``"a.wav[1.5-3.0 s]"`` for a segment."""
    if utt.start == 0 and utt.end is None:
        return utt.audio
    return f"{utt.audio}[{utt.start:g}-{'end' if utt.end is None else f'{utt.end:g}'} s]"


def _validate(
    utts: Sequence[Utterance],
    max_duration: float,
    min_duration: float,
    on_error: str,
    numbers: str,
    num_workers: int,
    labelled: bool,
) -> tuple[list[Utterance], list[dict], dict[str, Utterance]]:
    """:func:`validate_utterances`, plus each kept utterance by the content hash of its audio."""
    if on_error not in ("raise", "skip"):
        raise ConfigError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if numbers not in NUMBER_POLICIES:
        raise ConfigError(f"numbers must be one of {NUMBER_POLICIES}, got {numbers!r}")
    reasons: list[str | None] = []
    seen: dict[str, Utterance] = {}
    for utt in utts:
        first = seen.setdefault(utt.id, utt)
        if first is not utt:
            reasons.append(f"duplicate id: {_first(first)} has it too")
        elif labelled:
            reasons.append(_text_problem(utt) or (_number_problem(utt.text) if numbers == "reject" else None))
        else:
            reasons.append(None)
    transcribed = 0 if labelled else sum(u.text is not None for u in utts)
    if transcribed:
        log.info(
            "ignored the transcripts of %d utterances of untranscribed audio (split %r keeps none; "
            "put them in a labelled split to train on them)",
            transcribed,
            UNLABELED,
        )

    def problem(i: int) -> tuple[str | None, str | None]:
        return (reasons[i], None) if reasons[i] else _audio_problem(utts[i], min_duration, max_duration)

    kept, rejects, digests = [], [], {}
    pool = ThreadPoolExecutor(max_workers=num_workers)
    try:
        for utt, (reason, digest) in zip(utts, pool.map(problem, range(len(utts))), strict=True):
            if reason is None:
                text = normalize_text(utt.text) if labelled else None
                kept.append(utt if text == utt.text else dataclasses.replace(utt, text=text))
                digests.setdefault(digest, kept[-1])
            elif on_error == "raise":
                raise DataError(describe(reject(utt, reason)))
            else:
                rejects.append(reject(utt, reason))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return kept, rejects, digests


def _first(utt: Utterance) -> str:
    return f"the utterance at {utt.source}" if utt.source else "an earlier utterance"


def _text_problem(utt: Utterance) -> str | None:
    """Why ``utt``'s transcript is unusable, or ``None``."""
    if utt.text is None:
        return "empty transcript: the utterance has none (only the unlabeled split may lack transcripts)"
    if REPLACEMENT_CHAR in utt.text:
        return f"invalid UTF-8: the transcript {utt.text!r} holds bytes that are not UTF-8 (shown as \ufffd)"
    lost = lost_characters(utt.text)
    if lost:
        return f"unsupported characters: normalisation would drop {''.join(lost)!r} from {utt.text!r}"
    if not normalize_text(utt.text):
        return f"empty transcript: nothing left of {utt.text!r} after normalisation"
    return None


def _number_problem(text: str) -> str | None:
    """Why ``text`` is refused under ``numbers="reject"`` (it holds digits or word symbols), or ``None``."""
    found = spelled_characters(text)
    if not found:
        return None
    kind = "digits" if any(c.isdigit() for c in found) else "symbols"
    return (
        f"{kind}: the transcript {text!r} holds {''.join(found)!r}, refused by data.numbers=reject "
        "(data.numbers=spell writes them out in words)"
    )


def _audio_problem(utt: Utterance, min_duration: float, max_duration: float) -> tuple[str | None, str | None]:
    """``(why utt's audio is unusable, None)``, or ``(None, content hash of its samples)``.

    Header checks first; the span is read (and hashed) only if they pass.
    """
    path = utt.audio
    if not os.path.isfile(path):
        return "missing audio: file does not exist", None
    try:
        info = sf.info(path)
    except (sf.SoundFileError, RuntimeError) as e:
        return f"unreadable audio: {e}", None
    if info.frames == 0:
        return "empty audio: the file holds no samples", None
    truncated = wav_truncation(path)
    if truncated:
        return truncated, None
    file_duration = info.frames / info.samplerate
    end = file_duration if utt.end is None else min(utt.end, file_duration)
    duration = end - utt.start
    if duration <= 0:
        return f"empty audio: span starts at {utt.start} s, the file lasts {file_duration:.3f} s", None
    if duration > max_duration:
        return f"too long: {duration:.2f} s > max_duration {max_duration} s", None
    if duration < min_duration:
        return f"too short: {duration:.3f} s < min_duration {min_duration} s", None
    if abs(duration - utt.duration) > DURATION_TOLERANCE:
        return (
            f"duration mismatch: the manifest says {utt.duration:.3f} s, the audio holds {duration:.3f} s",
            None,
        )
    try:
        wav, rate = read_span(path, utt.start, utt.end)
    except AudioError as e:
        return f"unreadable audio: {str(e).removeprefix(f'{path}: ')}", None
    peak = float(np.abs(wav).max())
    if peak < SILENCE_PEAK:
        return f"silent audio: peak amplitude {peak:.1e} < {SILENCE_PEAK:.0e}", None
    return None, _digest(wav, rate)


def _digest(wav: np.ndarray, rate: int) -> str:
    """Content hash of decoded samples ``(N, C)`` at ``rate``: the same audio in any file or format."""
    digest = hashlib.sha256(f"{rate}:{wav.shape}".encode())  # SHA-NI: ~3x blake2b's speed here
    digest.update(np.ascontiguousarray(wav, dtype=np.float32))
    return digest.hexdigest()


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
