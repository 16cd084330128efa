"""espeak-ng synthesis gives the same bytes for the same arguments, whatever process, order or
earlier synthesis renders them (the corpus workers: forked after other synthesis, any order)."""

from __future__ import annotations

import hashlib
import multiprocessing
import random

from asr_kd.data.synthetic.tts import ACCENTS, Voice, english_variants, synthesize

#: Every voice the corpus can use: each accent with each natural variant.
VOICES = [Voice(accent, variant) for accent in ACCENTS for variant in english_variants()]


def _hashes(order: list[int]) -> dict[int, str]:
    """SHA-256 of each voice's samples (a short text), rendered in ``order``."""
    return {i: hashlib.sha256(synthesize("yes", VOICES[i], seed=i)[0].tobytes()).hexdigest()
            for i in order}


def test_every_voice_is_byte_identical_in_any_process_and_order():
    indices = list(range(len(VOICES)))
    shuffled = random.Random(0).sample(indices, len(indices))
    _hashes(shuffled[:20])  # earlier synthesis in this process, which the forked worker inherits
    with (multiprocessing.get_context("spawn").Pool(1) as fresh,
          multiprocessing.get_context("fork").Pool(1) as forked):
        reversed_order = fresh.apply_async(_hashes, (indices[::-1],))
        shuffled_order = forked.apply_async(_hashes, (shuffled,))
        assert reversed_order.get(timeout=120) == shuffled_order.get(timeout=120)
