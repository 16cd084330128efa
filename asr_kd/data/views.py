"""Augmented views of the training splits: speed-perturbed and noisy copies of each utterance.

A view is an utterance of its own (id ``<id>_sp0.9``, ``<id>_nz1``) with its own audio file, so
every later stage treats it like any other: its own features, its own posterior cache entry (keyed
by its audio content), and a student that reads exactly the view whose targets it is given.

``data.speed_perturb`` (factors; 1 is the clip itself) resamples the clip, pitch moving too.
``data.noise`` adds ``copies`` noisy copies of each clip: noise at an SNR drawn uniformly from
``snr_db``, from an RNG seeded by ``seed`` and the copy's id (reproducible, independent of order);
the noise is a random excerpt of a recording under ``files`` (a folder such as MUSAN's noise/), or,
when ``files`` is null, generated coloured noise (spectrum ~ 1/f^b, b drawn in [1, 2]: pink to
brown). Every copy is made from the clean clip. A copy's file name hashes what made it, so a
re-run reuses it. :func:`source_id` maps a view id back to its clip (one function: prepare's
naming and the cross-fitting folds, asr_kd.data.folds, both rely on it).
"""

from __future__ import annotations

import hashlib
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from asr_kd.data.audio import load_audio, save_audio, speed_perturb
from asr_kd.data.manifest import Utterance
from asr_kd.errors import ConfigError
from asr_kd.paths import inside
from asr_kd.utils import fingerprint

__all__ = ["VIEW_SPLITS", "view_settings", "source_id", "speed_id", "noise_id",
           "drawn_snr", "add_noise", "make_views"]

#: The splits that get views: what systems train on (labelled and untranscribed).
VIEW_SPLITS = ("train", "unlabeled")
#: Audio files a ``data.noise.files`` folder may hold.
NOISE_SUFFIXES = (".wav", ".flac", ".ogg")
_VIEW_SUFFIX = re.compile(r"_(?:sp\d+(?:\.\d+)?|nz\d+)$")
_LOWEST_NOISE_HZ = 50.0  # coloured noise is flat below this: no inaudible rumble eating the SNR


def speed_id(utt_id: str, factor: float) -> str:
    return f"{utt_id}_sp{factor:g}"


def noise_id(utt_id: str, copy: int) -> str:
    return f"{utt_id}_nz{copy}"


def source_id(view_id: str) -> str:
    """The id of the clip a view was made from (the id itself for a clip)."""
    return _VIEW_SUFFIX.sub("", view_id)


def view_settings(data: dict) -> dict:
    """The views of every training split from the ``data`` config node, checked and normalised:
    ``{"speed_perturb": [factors other than 1], "noise": {copies, snr_db, seed, files} or None}``."""
    factors = [float(f) for f in data.get("speed_perturb") or [] if float(f) != 1.0]
    if any(f <= 0 for f in factors):
        raise ConfigError(f"data.speed_perturb: factors must be > 0, got {data['speed_perturb']}")
    noise = dict(data.get("noise") or {})
    if not noise.get("copies"):
        return {"speed_perturb": factors, "noise": None}
    expected = {"copies", "snr_db", "seed", "files"}
    if set(noise) != expected:
        raise ConfigError(f"data.noise: expected keys {sorted(expected)}, got {sorted(noise)}")
    copies, snr, files = noise["copies"], noise["snr_db"], noise["files"]
    if not isinstance(copies, int) or copies < 0:
        raise ConfigError(f"data.noise.copies must be a whole number >= 0, got {copies!r}")
    if not (isinstance(snr, list | tuple) and len(snr) == 2 and float(snr[0]) <= float(snr[1])):
        raise ConfigError(f"data.noise.snr_db must be [low, high] in dB, got {snr!r}")
    if files is not None and not _noise_files(files):
        raise ConfigError(f"data.noise.files={files}: no {'/'.join(NOISE_SUFFIXES)} file under it")
    noise = {"copies": copies, "snr_db": [float(snr[0]), float(snr[1])], "seed": int(noise["seed"]),
             "files": None if files is None else str(Path(files).absolute())}
    return {"speed_perturb": factors, "noise": noise}


def _noise_files(folder: str) -> list[Path]:
    root = Path(folder)
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in NOISE_SUFFIXES) if root.is_dir() else []


def _rng(noise: dict, view: str) -> np.random.Generator:
    seed = int.from_bytes(hashlib.sha256(f"{noise['seed']}:{view}".encode()).digest()[:8], "little")
    return np.random.default_rng(seed)


def drawn_snr(view: str, noise: dict) -> float:
    """The SNR (dB) noisy copy ``view`` is made at: the first draw of its RNG."""
    low, high = noise["snr_db"]
    return float(_rng(noise, view).uniform(low, high))


def _coloured(n: int, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    exponent = rng.uniform(1.0, 2.0)  # 1: pink, 2: brown
    freqs = np.maximum(np.fft.rfftfreq(n, 1.0 / sample_rate), _LOWEST_NOISE_HZ)
    white = rng.standard_normal(len(freqs)) + 1j * rng.standard_normal(len(freqs))
    return np.fft.irfft(white * freqs ** (-exponent / 2), n)


def _excerpt(files: list[Path], n: int, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    path = files[rng.integers(len(files))]
    spare = sf.info(str(path)).duration - n / sample_rate
    start = rng.uniform(0.0, spare) if spare > 0 else 0.0
    wav = load_audio(path, sample_rate, start, start + n / sample_rate if spare > 0 else None)
    return np.resize(wav, n)  # a recording shorter than the clip repeats


def add_noise(
    wav: np.ndarray, view: str, noise: dict, sample_rate: int, files: list[Path] | None = None
) -> np.ndarray:
    """``wav`` plus noise at :func:`drawn_snr` (``files``: the noise recordings, else coloured noise);
    the sum is scaled down as a whole if it would clip."""
    rng = _rng(noise, view)
    snr = rng.uniform(*noise["snr_db"])
    extra = _excerpt(files, len(wav), rng, sample_rate) if files else _coloured(len(wav), rng, sample_rate)
    power = np.mean(np.square(wav, dtype=np.float64))
    gain = np.sqrt(power / max(np.mean(np.square(extra, dtype=np.float64)), 1e-20) / 10 ** (snr / 10))
    mixed = wav + gain * extra
    peak = np.abs(mixed).max()
    return (mixed * (0.99 / peak if peak > 0.99 else 1.0)).astype(np.float32)


def make_views(utts: list[Utterance], views: dict, folder: Path, sample_rate: int,
               num_workers: int = 4) -> list[Utterance]:
    """The copies ``views`` (:func:`view_settings`) asks for of ``utts``, written as FLAC under
    ``folder/sp<factor>/`` and ``folder/nz<copy>/``; an existing file is reused, so an interrupted
    run picks up where it stopped."""
    noise = views.get("noise")
    files = _noise_files(noise["files"]) if noise and noise["files"] else None
    noise_made_from = None if noise is None else [noise, [(str(p), p.stat().st_size) for p in files or []]]

    def copy(job: tuple[Utterance, str, float | int]) -> Utterance:
        utt, kind, arg = job
        if kind == "sp":
            view = speed_id(utt.id, arg)
            made_from = fingerprint([utt.audio, utt.start, utt.end, arg, sample_rate])[:8]
            path = folder / f"sp{arg:g}" / f"{view}-{made_from}.flac"
        else:
            view = noise_id(utt.id, arg)
            made_from = fingerprint([utt.audio, utt.start, utt.end, noise_made_from, sample_rate])[:8]
            path = folder / f"nz{arg}" / f"{view}-{made_from}.flac"
        if not inside(path, folder).is_file():
            wav = load_audio(utt.audio, sample_rate, utt.start, utt.end)
            wav = speed_perturb(wav, arg, sample_rate) if kind == "sp" else add_noise(
                wav, view, noise, sample_rate, files)
            save_audio(path, wav, sample_rate)
        duration = round(sf.info(str(path)).duration, 6)
        return Utterance(view, str(path), duration, utt.text, utt.speaker, source=utt.source)

    jobs = [(utt, "sp", factor) for factor in views.get("speed_perturb", []) for utt in utts]
    jobs += [(utt, "nz", n) for n in range(1, noise["copies"] + 1) for utt in utts] if noise else []
    if not jobs:
        return []
    with ThreadPoolExecutor(max_workers=num_workers) as pool:
        return list(tqdm(pool.map(copy, jobs), total=len(jobs), desc="augmented views"))
