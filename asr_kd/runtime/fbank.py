"""Kaldi fbank with kaldi-native-fbank (the library sherpa-onnx computes its own fbank with),
configured from an export's ``meta.json`` ``feature`` entry to match the training front end
(``asr_kd.features.frontend.KaldiFbank``), for asr_kd.runtime.onnx_transcriber (the Emformer's
exports; sherpa-onnx computes the features of the others itself)."""

from __future__ import annotations

import kaldi_native_fbank as knf
import numpy as np

__all__ = ["StreamingFbank"]


class StreamingFbank:
    """Feed samples in pieces of any size, pull the feature frames completed so far (Kaldi framing,
    ``snip_edges``: a frame is ready once its whole window has arrived)."""

    def __init__(self, feature: dict):
        opts = knf.FbankOptions()
        frame = opts.frame_opts
        frame.samp_freq = float(feature["sample_rate"])
        frame.frame_length_ms = float(feature["frame_length_ms"])
        frame.frame_shift_ms = float(feature["frame_shift_ms"])
        frame.dither = float(feature["dither"])
        frame.snip_edges = bool(feature["snip_edges"])
        frame.window_type = feature["window_type"]
        frame.preemph_coeff = float(feature["preemphasis_coefficient"])
        frame.remove_dc_offset = bool(feature["remove_dc_offset"])
        opts.mel_opts.num_bins = int(feature["num_mel_bins"])
        opts.mel_opts.low_freq = float(feature["low_freq"])
        opts.mel_opts.high_freq = float(feature["high_freq"])
        opts.energy_floor = float(feature["energy_floor"])
        opts.use_energy = False
        opts.use_log_fbank = bool(feature["use_log_fbank"])
        opts.use_power = bool(feature["use_power"])
        self._opts = opts
        self._scale = float(feature["samples_scale"])
        self.sample_rate = int(feature["sample_rate"])
        self.dim = int(feature["num_mel_bins"])
        self.reset()

    def reset(self) -> None:
        """Start a new utterance."""
        self._fbank = knf.OnlineFbank(self._opts)
        self._taken = 0

    def accept(self, samples: np.ndarray) -> np.ndarray:
        """Consume float32 samples in [-1, 1]; returns the new frames ``(T, F)`` float32."""
        scaled = np.asarray(samples, dtype=np.float32) * self._scale
        self._fbank.accept_waveform(self.sample_rate, scaled.tolist())
        ready = self._fbank.num_frames_ready
        frames = [self._fbank.get_frame(i) for i in range(self._taken, ready)]
        self._taken = ready
        return np.asarray(frames, dtype=np.float32).reshape(-1, self.dim)
