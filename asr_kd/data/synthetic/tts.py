"""espeak-ng speech synthesis through ctypes (the library and voices come from ``espeakng-loader``).

espeak-ng keeps one global synthesiser per process whose output depends on what it spoke before
(pitch flutter position, noise generator): the same call gives different samples later in a run.
For a corpus that is byte-identical for a seed, whatever the order or the worker that renders it,
:func:`synthesize` reloads the library (1-2 ms) and seeds its noise generator for every utterance.
The ``klatt 6`` variants (speechPlayer) draw their breath and frication noise from the C library's
``rand()``, which neither reload nor espeak-ng's seed resets, so it is seeded (``srand``) too.
"""

from __future__ import annotations

import _ctypes
import ctypes
import os
from dataclasses import dataclass

import numpy as np

__all__ = ["Voice", "synthesize", "english_variants", "ACCENTS"]

#: espeak-ng English accents (language voice names).
ACCENTS = ("en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-us-nyc", "en-gb-x-gbclan",
           "en-gb-x-gbcwmd")
# Variants that sound like one human speaker (no whisper, robot or effect voices): the speaker pool.
_NATURAL_VARIANTS = (
    "Alex Alicia Andy Annie Denis Gene Henrique Hugo Marco Mario Michael Mike Nguyen Reed adam anika "
    "announcer antonio belinda benjamin caleb david ed edward f1 f2 f3 f4 f5 grandma grandpa gustave ian "
    "iven iven2 iven3 iven4 john linda m1 m2 m3 m4 m5 m6 m7 m8 marcelo michel miguel mike2 norbert pablo "
    "paul pedro quincy rob robert sandro steph steph2 steph3 travis victor"
).split()
_AUDIO_OUTPUT_SYNCHRONOUS, _POS_CHARACTER, _CHARS_UTF8 = 2, 1, 1
_RATE, _PITCH, _RANGE, _WORDGAP = 1, 3, 4, 7
_LIBC = ctypes.CDLL(None)  # the process's C library, whose rand() speechPlayer's noise draws from
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


@dataclass(frozen=True)
class Voice:
    """How one utterance is spoken: accent + variant (the timbre), speed, pitch and its range."""

    accent: str
    variant: str
    rate: int = 170  # words per minute (espeak default 175)
    pitch: int = 50  # 0..100
    pitch_range: int = 50  # 0..100, intonation
    word_gap: int = 0  # extra pause between words, 10 ms units

    @property
    def name(self) -> str:
        return f"{self.accent}+{self.variant}"


def english_variants() -> list[str]:
    """The natural-sounding espeak-ng voice variants that this espeakng-loader ships, sorted."""
    import espeakng_loader

    shipped = set(os.listdir(os.path.join(espeakng_loader.get_data_path(), "voices", "!v")))
    return sorted(v for v in _NATURAL_VARIANTS if v in shipped)


class _Espeak:
    """A freshly loaded espeak-ng library; collects the samples its callback delivers."""

    _loaded: _Espeak | None = None

    def __init__(self):
        import espeakng_loader

        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        data_root = os.path.dirname(espeakng_loader.get_data_path()).encode()
        self.sample_rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_root, 0)
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak-ng failed to initialise with data at {data_root!r}")
        self.chunks: list[np.ndarray] = []
        self._callback = _CALLBACK(self._collect)  # keep a reference: C holds only the pointer
        self.lib.espeak_SetSynthCallback(self._callback)
        self.lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]

    def _collect(self, samples, count, _events) -> int:
        if count > 0:
            self.chunks.append(np.ctypeslib.as_array(samples, shape=(count,)).copy())
        return 0

    @classmethod
    def fresh(cls) -> _Espeak:
        """Unload the library (dropping all its state) and load it anew."""
        if cls._loaded is not None:
            cls._loaded.lib.espeak_Terminate()
            _ctypes.dlclose(cls._loaded.lib._handle)
        cls._loaded = cls()
        return cls._loaded

    def speak(self, text: str, voice: Voice, seed: int) -> np.ndarray:
        if self.lib.espeak_SetVoiceByName(voice.name.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {voice.name!r}")
        for param, value in ((_RATE, voice.rate), (_PITCH, voice.pitch), (_RANGE, voice.pitch_range),
                             (_WORDGAP, voice.word_gap)):
            self.lib.espeak_SetParameter(param, value, 0)
        self.lib.espeak_ng_SetRandSeed(seed)
        _LIBC.srand(ctypes.c_uint(seed))
        self.chunks = []
        data = text.encode()
        err = self.lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if err != 0 or not self.chunks:
            raise RuntimeError(f"espeak-ng could not speak {text!r} with {voice} (error {err})")
        return np.concatenate(self.chunks).astype(np.float32) / 32768.0


def synthesize(text: str, voice: Voice, seed: int = 0) -> tuple[np.ndarray, int]:
    """Speak ``text``; float32 samples in [-1, 1] and espeak-ng's rate (22050 Hz). Same args, same samples."""
    engine = _Espeak.fresh()
    return engine.speak(text, voice, seed), engine.sample_rate
