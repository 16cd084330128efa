"""The embedded corpus: espeak-ng voices speaking generated sentences; no download needed.

``make_synthetic_corpus`` (the ``data=synthetic`` importer) returns five splits:

- ``train`` and ``dev``: voices of the *seen* speaker pool;
- ``test_seen``: seen speakers, sentences that occur in no other split;
- ``test_unseen``: speakers built on voice variants never used in training, new sentences;
- ``unlabeled`` (untranscribed audio, texts ``None``): sentences of no other split, spoken by the
  seen speakers and by further speakers on the seen speakers' voice variants (never the held-out
  ones). It is drawn after the others from its own random stream, so that the labelled splits (and
  their wavs) do not change with its size. When the domain has too few sentences left (``open_english``
  with a large train split), it repeats train sentences, never a held-out one.

A speaker is an espeak-ng accent + voice variant (timbre) + its own speaking rate, pitch and
intonation range; each utterance jitters rate and pitch around the speaker's, adds leading and
trailing silence, a random gain and white noise at a random SNR. Everything derives from ``seed``.
Each wav's name carries a hash of everything that shapes it, so a re-run re-uses finished files
and never re-uses a stale one.
"""

from __future__ import annotations

import logging
import multiprocessing
import random
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from itertools import cycle
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from asr_kd.data.manifest import UNLABELED, Utterance
from asr_kd.data.synthetic.grammar import command_sentence
from asr_kd.data.synthetic.open_english import open_english_sentences
from asr_kd.data.synthetic.tts import ACCENTS, Voice, english_variants, synthesize
from asr_kd.errors import ConfigError
from asr_kd.utils import fingerprint, write_json

__all__ = ["make_synthetic_corpus", "DOMAINS"]

log = logging.getLogger(__name__)

DOMAINS = ("commands", "open_english")
_FORMAT_VERSION = 2  # bump when rendering changes, so old wavs are not re-used


@dataclass(frozen=True)
class _Job:
    """Everything that determines one utterance's audio."""

    id: str
    text: str
    voice: Voice
    noise_seed: int
    snr_db: float
    sample_rate: int

    def path(self, wav_dir: Path) -> Path:
        spec = fingerprint({**asdict(self), "version": _FORMAT_VERSION})[:10]
        return wav_dir / f"{self.id}-{spec}.wav"


def make_synthetic_corpus(
    work_dir: str | Path,
    *,
    domain: str,
    seed: int,
    sample_rate: int,
    num_train: int,
    num_dev: int,
    num_test: int,
    num_unlabeled: int,
    seen_speakers: int,
    unseen_speakers: int,
    unlabeled_speakers: int,
    accents: Sequence[str],
    rate_range: tuple[int, int],
    unseen_variant_fraction: float,
    snr_db: tuple[float, float],
    num_workers: int,
) -> dict[str, list[Utterance]]:
    """Synthesise (or re-use) the corpus under ``work_dir/synthetic`` and return its splits. The
    settings have one home, ``conf/data/synthetic.yaml``.

    ``num_test`` utterances go to each of ``test_seen`` and ``test_unseen``; ``num_unlabeled`` to
    ``unlabeled`` (0: no such split), whose ``unlabeled_speakers`` new voices join the seen ones.
    ``domain`` is ``commands`` (voice-assistant grammar, a few hundred words) or ``open_english``
    (stdlib docstring sentences, thousands of words). ``accents`` are espeak-ng English voices (any of
    :data:`asr_kd.data.synthetic.tts.ACCENTS`); ``rate_range`` bounds each speaker's words per minute.
    """
    if domain not in DOMAINS:
        raise ConfigError(f"unknown synthetic domain {domain!r}; choose one of {DOMAINS}")
    unknown = set(accents) - set(ACCENTS)
    if unknown or not accents:
        raise ConfigError(f"unknown espeak-ng accent(s) {sorted(unknown)}; choose from {ACCENTS}")
    rng = random.Random(seed)
    sentences = _sentences(domain, rng, num_train, num_dev, num_test)
    seen, unseen, seen_variants = _speakers(
        rng, seen_speakers, unseen_speakers, unseen_variant_fraction, list(accents), rate_range
    )
    jobs = {
        split: _split_jobs(split, texts, unseen if split == "test_unseen" else seen, rng, snr_db, sample_rate)
        for split, texts in sentences.items()
    }
    extra: list[Voice] = []
    if num_unlabeled:
        unlabeled_rng = random.Random(f"{seed}:{UNLABELED}")
        texts = _unlabeled_sentences(domain, unlabeled_rng, sentences, num_unlabeled)
        extra = [
            _speaker(unlabeled_rng, list(accents), seen_variants, rate_range)
            for _ in range(unlabeled_speakers)
        ]
        jobs[UNLABELED] = _split_jobs(UNLABELED, texts, seen + extra, unlabeled_rng, snr_db, sample_rate)
    wav_dir = Path(work_dir) / "synthetic" / "wavs"
    durations = _render_all([j for split_jobs in jobs.values() for j in split_jobs], wav_dir, num_workers)
    write_json(
        Path(work_dir) / "synthetic" / "corpus.json",
        {
            "domain": domain,
            "seed": seed,
            "python": sys.version.split()[0],
            "speakers": {
                "seen": [asdict(v) for v in seen],
                "unseen": [asdict(v) for v in unseen],
                UNLABELED: [asdict(v) for v in extra],
            },
            "held_out_variants": sorted(set(english_variants()) - set(seen_variants)),
        },
    )
    return {
        split: [
            Utterance(
                j.id,
                str(j.path(wav_dir)),
                durations[j.id],
                None if split == UNLABELED else j.text,  # untranscribed: the text is never written
                speaker=_speaker_id(j.voice),
            )
            for j in split_jobs
        ]
        for split, split_jobs in jobs.items()
    }


def _split_jobs(
    split: str,
    texts: Sequence[str],
    pool: Sequence[Voice],
    rng: random.Random,
    snr_db: tuple[float, float],
    sample_rate: int,
) -> list[_Job]:
    """One job per text: a speaker of ``pool``, jittered, with its own noise seed and SNR."""
    jobs = []
    for i, text in enumerate(texts):
        voice = _jitter(rng.choice(pool), rng)
        noise_seed, snr = rng.randrange(2**31), round(rng.uniform(*snr_db), 1)
        jobs.append(_Job(f"{split}-{i:05d}", text, voice, noise_seed, snr, sample_rate))
    return jobs


def _sentences(
    domain: str, rng: random.Random, num_train: int, num_dev: int, num_test: int
) -> dict[str, list]:
    """Disjoint sentence lists per split; train cycles through its pool if the pool is smaller."""
    held_out = 2 * num_test + num_dev
    if domain == "commands":
        pool: list[str] = []
        seen: set[str] = set()
        for _ in range(50 * (held_out + num_train)):
            sentence = command_sentence(rng)
            if sentence not in seen:
                seen.add(sentence)
                pool.append(sentence)
            if len(pool) == held_out + num_train:
                break
    else:
        pool = list(open_english_sentences())
        rng.shuffle(pool)
    if len(pool) <= held_out:
        raise ValueError(
            f"the {domain} domain has {len(pool)} distinct sentences, too few for "
            f"{held_out} held-out (dev + 2 x test) plus training sentences"
        )
    train_pool = pool[held_out:]
    return {
        "train": [s for s, _ in zip(cycle(train_pool), range(num_train))],
        "dev": pool[2 * num_test : held_out],
        "test_seen": pool[:num_test],
        "test_unseen": pool[num_test : 2 * num_test],
    }


def _unlabeled_sentences(
    domain: str, rng: random.Random, labelled: dict[str, list], n: int
) -> list[str]:
    """``n`` sentences of no labelled split; if the domain runs out, new ones and train ones repeated."""
    taken = {s for texts in labelled.values() for s in texts}
    if domain == "commands":
        draws: Iterable[str] = (command_sentence(rng) for _ in range(50 * n))
    else:
        draws = list(open_english_sentences())
        rng.shuffle(draws)
    new: list[str] = []
    for sentence in draws:
        if sentence not in taken:
            taken.add(sentence)
            new.append(sentence)
            if len(new) == n:
                return new
    log.info("synthetic: %d new sentences for %d unlabeled utterances; train ones fill the rest", len(new), n)
    return [s for s, _ in zip(cycle(new + list(dict.fromkeys(labelled["train"]))), range(n))]


def _speakers(
    rng: random.Random,
    n_seen: int,
    n_unseen: int,
    unseen_fraction: float,
    accents: list[str],
    rate_range: tuple[int, int],
) -> tuple[list[Voice], list[Voice], list[str]]:
    """Seen and unseen speakers, and the variants of the seen pool: unseen ones use none of them."""
    variants = english_variants()
    rng.shuffle(variants)
    n_held = max(1, round(unseen_fraction * len(variants)))
    held, kept = variants[:n_held], variants[n_held:]
    seen = [_speaker(rng, accents, kept, rate_range) for _ in range(n_seen)]
    return seen, [_speaker(rng, accents, held, rate_range) for _ in range(n_unseen)], kept


def _speaker(
    rng: random.Random, accents: list[str], variants: list[str], rate_range: tuple[int, int]
) -> Voice:
    """A speaker: an accent, a variant of ``variants``, and its own rate, pitch and intonation range."""
    return Voice(
        rng.choice(accents),
        rng.choice(variants),
        rate=rng.randint(*rate_range),
        pitch=rng.randint(30, 70),
        pitch_range=rng.randint(30, 80),
    )


def _jitter(voice: Voice, rng: random.Random) -> Voice:
    """The speaker's voice with this utterance's own small changes of rate, pitch and pauses."""
    gap = 0 if rng.random() < 0.8 else rng.randint(1, 3)
    return Voice(
        voice.accent,
        voice.variant,
        rate=voice.rate + rng.randint(-12, 12),
        pitch=min(99, max(1, voice.pitch + rng.randint(-4, 4))),
        pitch_range=voice.pitch_range,
        word_gap=gap,
    )


def _speaker_id(voice: Voice) -> str:
    return f"{voice.accent}+{voice.variant}-r{voice.pitch_range}"


def _render_all(jobs: list[_Job], wav_dir: Path, num_workers: int) -> dict[str, float]:
    """Render the wavs not already on disk (in ``num_workers`` processes); id -> duration (s)."""
    durations = {}
    todo = []
    for job in jobs:
        path = job.path(wav_dir)
        if path.exists():
            durations[job.id] = sf.info(str(path)).duration
        else:
            todo.append(job)
    if todo:
        log.info(
            "synthetic: rendering %d of %d utterances (%d already on disk)",
            len(todo),
            len(jobs),
            len(jobs) - len(todo),
        )
        wav_dir.mkdir(parents=True, exist_ok=True)
        work = [(job, wav_dir) for job in todo]
        if num_workers > 1:
            with multiprocessing.Pool(num_workers, initializer=_init_worker) as pool:
                results = list(
                    tqdm(pool.imap(_render, work, chunksize=16), total=len(work), desc="synthesise")
                )
        else:
            results = [_render(w) for w in tqdm(work, desc="synthesise")]
        durations.update(results)
    return durations


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def _render(work: tuple[_Job, Path]) -> tuple[str, float]:
    """Speak one job, resample, pad with silence, scale, add noise, write the wav atomically."""
    import torch
    import torchaudio.functional as AF

    from asr_kd.data.audio import save_audio

    job, wav_dir = work
    speech, native_sr = synthesize(job.text, job.voice, seed=job.noise_seed)
    speech = AF.resample(torch.from_numpy(speech), native_sr, job.sample_rate).numpy()
    rng = np.random.default_rng(job.noise_seed)
    lead, tail = (int(rng.uniform(0.05, 0.3) * job.sample_rate) for _ in range(2))
    audio = np.concatenate([np.zeros(lead, np.float32), speech, np.zeros(tail, np.float32)])
    audio *= rng.uniform(0.3, 0.9) / max(float(np.abs(audio).max()), 1e-6)
    speech_rms = float(np.sqrt(np.mean(audio[lead : lead + len(speech)] ** 2)))
    audio += rng.normal(0.0, speech_rms * 10 ** (-job.snr_db / 20), len(audio)).astype(np.float32)
    audio = np.clip(audio, -1.0, 1.0)
    save_audio(job.path(wav_dir), audio, job.sample_rate)
    return job.id, len(audio) / job.sample_rate
