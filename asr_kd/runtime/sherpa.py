"""Streaming recognition of a sherpa-onnx export (``contract: wenet_ctc``) with sherpa-onnx itself:
its Kaldi fbank, its chunk stepping and its greedy CTC. This module only configures it from
``meta.json`` and ends an utterance as asr_kd's PyTorch recogniser does.

Usage::

    model = SherpaModel("exp/demo/export/student_kd")     # model.onnx (int8=True: model.int8.onnx)
    stream = model.stream()                               # one per utterance / client
    for piece in pieces:                                  # float32 in [-1, 1], any sample rate
        partial = stream.accept_waveform(piece, rate)     # sherpa-onnx resamples to the model's
    text = stream.finalize()

Front end: sherpa-onnx's defaults differ from the training front end in ``high_freq`` (-400, not
0) and ``snip_edges`` (false, not true); both are set from ``meta.json`` here (and must be in any
other sherpa-onnx program: see README "Deploy"). The end of an utterance: sherpa-onnx decodes a
chunk only once more than a whole chunk of frames is ready, so :meth:`SherpaStream.finalize`
appends just enough zero samples for the last (partial) chunk, and keeps only tokens that start on a
true encoder frame (``ceil(frames / 4)``), as the PyTorch recogniser trims its padded tail. What
still differs: the last chunk's padding frames are the fbank of silence, not the zero
(normalised) frames the PyTorch recogniser pads with, and frames see their whole chunk.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sherpa_onnx.lib import _sherpa_onnx as native

from asr_kd.runtime.folder import open_export

__all__ = ["SherpaModel", "SherpaStream", "recognizer_config"]

#: Encoder frame duration sherpa-onnx reports timestamps in (10 ms frames x subsampling 4, fixed).
_TIMESTAMP_FRAME_S = 0.04


def recognizer_config(export_dir: Path, meta: dict, graph: str, threads: int
                      ) -> native.OnlineRecognizerConfig:
    """sherpa-onnx's recogniser config for an export: its WeNet CTC model and the training front end."""
    feature = meta["feature"]
    feat = native.FeatureExtractorConfig(
        sampling_rate=int(meta["sample_rate"]), feature_dim=int(feature["num_mel_bins"]),
        low_freq=float(feature["low_freq"]), high_freq=float(feature["high_freq"]),
        dither=float(feature["dither"]), snip_edges=bool(feature["snip_edges"]))
    model = native.OnlineModelConfig(
        wenet_ctc=native.OnlineWenetCtcModelConfig(
            model=str(export_dir / graph), chunk_size=int(meta["chunk_frames"]),
            num_left_chunks=int(meta["left_chunks"])),
        tokens=str(export_dir / "tokens.txt"), num_threads=threads)
    return native.OnlineRecognizerConfig(feat_config=feat, model_config=model, enable_endpoint=False,
                                              decoding_method="greedy_search")


class SherpaModel:
    """An export folder loaded once into a sherpa-onnx recogniser; streams share it.

    ``threads``: onnxruntime intra-op threads (1: one core per stream, as RTFs are reported).
    The graph's SHA-256 is checked against ``meta.json`` first (asr_kd.runtime.folder).
    """

    def __init__(self, export_dir: str | Path, int8: bool = False, threads: int = 1):
        export_dir = Path(export_dir)
        graph = "model.int8.onnx" if int8 else "model.onnx"
        self.meta = open_export(export_dir, graph)
        self.sample_rate: int = int(self.meta["sample_rate"])
        self.recognizer = native.OnlineRecognizer(
            recognizer_config(export_dir, self.meta, graph, threads))
        feature = self.meta["feature"]
        self.frame_window = int(self.sample_rate * feature["frame_length_ms"] / 1000)
        self.frame_shift = int(self.sample_rate * feature["frame_shift_ms"] / 1000)
        self.chunk_input = int(self.meta["chunk_frames"]) * int(self.meta["subsampling_factor"])

    def frames(self, samples: int) -> int:
        """Feature frames of ``samples`` samples (Kaldi framing, ``snip_edges``)."""
        return 0 if samples < self.frame_window else 1 + (samples - self.frame_window) // self.frame_shift

    def text(self, tokens: list[str]) -> str:
        """Text of sherpa-onnx's tokens as asr_kd's tokenizers decode them (BPE: ``<unk>`` dropped)."""
        if self.meta.get("bpe"):
            return "".join(t for t in tokens if t != "<unk>").strip()
        return "".join(tokens)

    def stream(self) -> SherpaStream:
        return SherpaStream(self)


class SherpaStream:
    """One utterance's sherpa-onnx stream (see module docstring)."""

    def __init__(self, model: SherpaModel):
        self.model = model
        self._stream = model.recognizer.create_stream()
        self.samples = 0.0  # at the model's rate
        self.rate: int | None = None  # of the input (sherpa-onnx fixes it at the first piece)
        self.text = ""
        self.finished = False

    def accept_waveform(self, samples: np.ndarray, sample_rate: int | None = None) -> str:
        """Consume mono float32 samples in [-1, 1] at ``sample_rate`` (default: the model's); returns
        the partial text."""
        if self.finished:
            raise RuntimeError("finalize() was called: start a new stream")
        rate = sample_rate or self.model.sample_rate
        if self.rate not in (None, rate):  # sherpa-onnx would end the process
            raise ValueError(f"the stream's audio was {self.rate} Hz, then {rate} Hz: one rate per stream")
        self.rate = rate
        self._stream.accept_waveform(rate, np.ascontiguousarray(samples, dtype=np.float32))
        self.samples += len(samples) * self.model.sample_rate / rate
        self._decode()
        return self.text

    def finalize(self) -> str:
        """Pad the last chunk, decode it, drop tokens of padding frames; returns the final text."""
        if not self.finished:
            self.finished = True
            model, samples = self.model, round(self.samples)
            frames = model.frames(samples)
            if frames:
                # sherpa-onnx runs a chunk once frames beyond it are ready: one frame past the last chunk
                target = -(-frames // model.chunk_input) * model.chunk_input + 1
                pad = model.frame_window + (target - 1) * model.frame_shift - samples
                rate = self.rate or model.sample_rate
                pad = int(np.ceil(pad * rate / model.sample_rate))  # at the input's rate
                self._stream.accept_waveform(rate, np.zeros(pad, dtype=np.float32))
            self._stream.input_finished()
            self._decode(last_frame=-(-frames // int(model.meta["subsampling_factor"])))
        return self.text

    def _decode(self, last_frame: int | None = None) -> None:
        recognizer = self.model.recognizer
        while recognizer.is_ready(self._stream):
            recognizer.decode_stream(self._stream)
        result = recognizer.get_result(self._stream)
        tokens = result.tokens
        if last_frame is not None:
            tokens = [t for t, s in zip(tokens, result.timestamps, strict=True)
                      if round(s / _TIMESTAMP_FRAME_S) < last_frame]
        self.text = self.model.text(tokens)
