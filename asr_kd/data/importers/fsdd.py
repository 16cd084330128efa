"""Connected digit strings built from the Free Spoken Digit Dataset (real recordings, 8 kHz, 6 speakers).

``ROOT/recordings/{digit}_{speaker}_{take}.wav``. Each utterance joins ``min_digits``..``max_digits``
recordings of one speaker with short random pauses of faint noise, resampled to ``sample_rate``; its
text spells the digits ("four two seven"). ``test`` uses only ``held_out_speaker``; ``train`` and
``dev`` use the other speakers, ``dev`` their takes below ``dev_takes`` and ``train`` the rest, so no
recording heard in dev or test is trained on. ``num_unlabeled`` > 0 adds ``unlabeled``: untranscribed
strings of the held-out speaker's takes below ``unlabeled_takes`` (audio of the voice the model will
serve, as a deployed recognizer collects it, its texts never written), whose takes ``test`` then
leaves out. Everything is a function of ``seed``: utterance ``i`` of a
split does not depend on how many are asked for. WAVs go to ``work_dir/audio/fsdd/<split>/``, named
with a hash of how they were made, and an existing file is reused.
"""

from __future__ import annotations

import os
import random
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from asr_kd.data.audio import load_audio, save_audio
from asr_kd.data.importers._common import make_utterance
from asr_kd.data.manifest import Utterance
from asr_kd.errors import ConfigError, DataError, MissingFileError
from asr_kd.utils import fingerprint

__all__ = ["import_fsdd", "DIGIT_WORDS"]

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")
SPLITS = ("train", "dev", "test", "unlabeled")


@dataclass(frozen=True)
class Take:
    """One FSDD recording: a speaker saying one digit."""

    digit: int
    speaker: str
    take: int
    path: Path


@dataclass(frozen=True)
class DigitString:
    """How one utterance is made: its recordings, the pauses around them (s), the noise seed."""

    utt_id: str
    speaker: str
    takes: tuple[Take, ...]
    pauses: tuple[float, ...]
    noise_seed: int


def import_fsdd(
    work_dir: Path,
    root: str | os.PathLike,
    held_out_speaker: str = "theo",
    num_train: int = 2400,
    num_dev: int = 300,
    num_test: int = 300,
    num_unlabeled: int = 0,
    unlabeled_takes: int = 0,
    min_digits: int = 2,
    max_digits: int = 7,
    seed: int = 0,
    sample_rate: int = 16000,
    dev_takes: int = 5,
    min_pause: float = 0.05,
    max_pause: float = 0.25,
    noise_dbfs: float = -60.0,
) -> dict[str, list[Utterance]]:
    """Splits train, dev, test (and unlabeled) of connected digit strings (see the module docstring)."""
    if not 1 <= min_digits <= max_digits:
        raise ConfigError(f"need 1 <= min_digits <= max_digits, got {min_digits}, {max_digits}")
    if not 0 <= min_pause <= max_pause:
        raise ConfigError(f"need 0 <= min_pause <= max_pause, got {min_pause}, {max_pause}")
    pools = _pools(_scan(Path(root) / "recordings"), held_out_speaker, dev_takes, unlabeled_takes)
    counts = dict(zip(SPLITS, (num_train, num_dev, num_test, num_unlabeled), strict=True))
    cache: dict[Path, np.ndarray] = {}

    def load(path: Path) -> np.ndarray:
        if path not in cache:
            cache[path] = load_audio(path, sample_rate)
        return cache[path]

    def build(plan: DigitString, split: str) -> Utterance:
        style = {"sample_rate": sample_rate, "noise_dbfs": noise_dbfs}
        recipe = [[t.path.name for t in plan.takes], plan.pauses, plan.noise_seed, style]
        path = Path(work_dir) / "audio" / "fsdd" / split / f"{plan.utt_id}_{fingerprint(recipe)[:8]}.wav"
        if path.is_file():
            duration = sf.info(str(path)).duration
        else:
            wav = _synthesise(plan, load, sample_rate, 10 ** (noise_dbfs / 20))
            save_audio(path, wav, sample_rate)
            duration = len(wav) / sample_rate
        text = None if split == "unlabeled" else " ".join(DIGIT_WORDS[t.digit] for t in plan.takes)
        return make_utterance(plan.utt_id, path, text, speaker=plan.speaker, duration=duration)

    out = {}
    with ThreadPoolExecutor(max_workers=8) as pool:
        for split, n in counts.items():
            if n > 0 and not pools[split]:
                hint = " (data.unlabeled_takes is 0)" if split == "unlabeled" else ""
                raise DataError(f"{root}: no recordings left for the {split} split{hint}")
            plans = [
                _plan(split, i, pools[split], seed, (min_digits, max_digits), (min_pause, max_pause))
                for i in range(n)
            ]
            if n > 0 or split != "unlabeled":
                out[split] = list(pool.map(build, plans, [split] * n))
    return out


def _scan(folder: Path) -> list[Take]:
    """Every recording in ``folder``, sorted by name; a file named otherwise is an error."""
    if not folder.is_dir():
        raise MissingFileError(f"{folder}: FSDD recordings folder does not exist")
    takes = []
    for path in sorted(folder.glob("*.wav")):
        match = _NAME.match(path.name)
        if not match:
            raise DataError(f"{path}: not an FSDD file name ({{digit}}_{{speaker}}_{{take}}.wav)")
        takes.append(Take(int(match[1]), match[2], int(match[3]), path))
    if not takes:
        raise MissingFileError(f"{folder}: no .wav recordings found")
    return takes


def _pools(
    takes: list[Take], held_out_speaker: str, dev_takes: int, unlabeled_takes: int
) -> dict[str, dict[str, list[Take]]]:
    """Recordings each split may use, by speaker: the held-out speaker's for test (its low takes for
    unlabeled), the others' low takes for dev and the rest for train."""
    speakers = sorted({t.speaker for t in takes})
    if held_out_speaker not in speakers:
        raise ConfigError(f"held_out_speaker {held_out_speaker!r} is not among the FSDD speakers {speakers}")
    pools: dict[str, dict[str, list[Take]]] = {split: {} for split in SPLITS}
    for t in takes:
        if t.speaker == held_out_speaker:
            split = "unlabeled" if t.take < unlabeled_takes else "test"
        else:
            split = "dev" if t.take < dev_takes else "train"
        pools[split].setdefault(t.speaker, []).append(t)
    return pools


def _plan(
    split: str,
    index: int,
    pool: dict[str, list[Take]],
    seed: int,
    digits: tuple[int, int],
    pause: tuple[float, float],
) -> DigitString:
    """The random choices for utterance ``index`` of ``split``, drawn from a generator seeded by both."""
    rng = random.Random(f"fsdd:{seed}:{split}:{index}")
    speaker = rng.choice(sorted(pool))
    takes = tuple(rng.choice(pool[speaker]) for _ in range(rng.randint(*digits)))
    pauses = tuple(round(rng.uniform(*pause), 3) for _ in range(len(takes) + 1))
    return DigitString(f"{speaker}-{split}-{index:05d}", speaker, takes, pauses, rng.getrandbits(32))


def _synthesise(plan: DigitString, load, sample_rate: int, noise_std: float) -> np.ndarray:
    """Pause, digit, pause, digit, ..., pause: the recordings joined by stretches of faint Gaussian noise."""
    rng = np.random.default_rng(plan.noise_seed)
    pieces = []
    for i, pause in enumerate(plan.pauses):
        pieces.append(rng.normal(0.0, noise_std, round(pause * sample_rate)).astype(np.float32))
        if i < len(plan.takes):
            pieces.append(load(plan.takes[i].path))
    return np.concatenate(pieces)
