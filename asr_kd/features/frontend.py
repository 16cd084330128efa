"""Log-mel filterbank front ends. Every backend frames audio the Kaldi way (``snip_edges``):
``1 + (N - window) // shift`` frames, so features, frame counts and streaming agree across them.

Configs: ``conf/features/fbank.yaml`` (torchaudio's Kaldi-compatible fbank, default) and
``conf/features/librosa.yaml``. This module is the only place that knows which library computes
features.
"""

from __future__ import annotations

import numpy as np
import torch

from asr_kd.errors import ConfigError

__all__ = ["LogMelFrontend", "KaldiFbank", "LibrosaLogMel"]


class LogMelFrontend:
    """Common framing arithmetic; subclasses implement :meth:`compute` on mono float32 audio."""

    def __init__(
        self,
        num_mel_bins: int = 80,
        sample_rate: int = 16000,
        frame_length_ms: float = 25.0,
        frame_shift_ms: float = 10.0,
    ):
        if num_mel_bins < 4:  # torchaudio's Kaldi fbank needs more than 3
            raise ConfigError(f"features.frontend.num_mel_bins must be >= 4, not {num_mel_bins}")
        if not 0 < frame_shift_ms <= frame_length_ms:
            raise ConfigError(f"features.frontend: need 0 < frame_shift_ms <= frame_length_ms, got "
                              f"{frame_shift_ms} and {frame_length_ms}")
        self.num_mel_bins = num_mel_bins
        self.sample_rate = sample_rate
        self.frame_length_ms = frame_length_ms
        self.frame_shift_ms = frame_shift_ms
        self.window = int(sample_rate * frame_length_ms / 1000)
        self.shift = int(sample_rate * frame_shift_ms / 1000)

    def num_frames(self, num_samples: int) -> int:
        return 0 if num_samples < self.window else 1 + (num_samples - self.window) // self.shift

    def __call__(self, wav: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Features ``(T, F)`` float32 of a 1-D waveform in [-1, 1]."""
        wav = torch.as_tensor(wav, dtype=torch.float32)
        if self.num_frames(wav.numel()) == 0:
            return torch.zeros(0, self.num_mel_bins)
        return self.compute(wav)

    def compute(self, wav: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def config(self) -> dict:
        return {
            "backend": type(self).__name__,
            "num_mel_bins": self.num_mel_bins,
            "sample_rate": self.sample_rate,
            "frame_length_ms": self.frame_length_ms,
            "frame_shift_ms": self.frame_shift_ms,
        }


class KaldiFbank(LogMelFrontend):
    """Kaldi-compatible fbank via ``torchaudio.compliance.kaldi.fbank`` (no dither: reproducible)."""

    def compute(self, wav: torch.Tensor) -> torch.Tensor:
        from torchaudio.compliance import kaldi

        return kaldi.fbank(
            wav.unsqueeze(0) * 32768.0,
            num_mel_bins=self.num_mel_bins,
            sample_frequency=self.sample_rate,
            frame_length=self.frame_length_ms,
            frame_shift=self.frame_shift_ms,
            dither=0.0,
            energy_floor=0.0,
            snip_edges=True,
        )


class LibrosaLogMel(LogMelFrontend):
    """librosa mel spectrogram (Hann window, power 2, natural log), framed like Kaldi."""

    def compute(self, wav: torch.Tensor) -> torch.Tensor:
        import librosa

        n_fft = 1 << (self.window - 1).bit_length()
        # librosa centres the window inside the FFT frame: pad so frame t starts at t * shift.
        half = (n_fft - self.window) // 2
        frames = self.num_frames(wav.numel())
        mel = librosa.feature.melspectrogram(
            y=np.pad(wav.numpy(), (half, n_fft - self.window - half)),
            sr=self.sample_rate,
            n_fft=n_fft,
            win_length=self.window,
            hop_length=self.shift,
            n_mels=self.num_mel_bins,
            center=False,
            power=2.0,
        )
        feats = np.log(np.maximum(mel * 32768.0**2, 1e-10)).T[:frames]
        return torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32))
