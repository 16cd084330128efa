"""Streaming greedy-CTC recognition of an export of ``contract: asr_kd`` (asr_kd.export.onnx), no
PyTorch needed. It stays beside sherpa-onnx (asr_kd.runtime.sherpa) for one reason: the Emformer
student, whose left-context/memory states fit none of sherpa-onnx's online CTC contracts (WeNet,
NeMo cache-aware, Zipformer2); the chunked Conformer goes to sherpa-onnx and never through here.

Usage::

    model = OnnxModel("exp/demo/export/student_kd")       # model.onnx (int8=True: model.int8.onnx)
    stream = model.stream()                               # one per utterance / client
    for piece in pieces:                                  # float32 in [-1, 1] at model.sample_rate
        partial = stream.accept_waveform(piece)
    text = stream.finalize()

Each stream keeps its fbank, the normalised frames not yet in a chunk, the graph's states and the
greedy CTC history; :meth:`OnnxStream.finalize` zero-pads the tail to a whole chunk exactly as
the PyTorch recognizer (asr_kd.decoding.streaming) does, so both give the same logits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import soxr

from asr_kd.runtime.fbank import StreamingFbank
from asr_kd.runtime.folder import open_export

__all__ = ["OnnxModel", "OnnxStream", "read_tokens"]


def read_tokens(path: Path) -> list[str]:
    """``tokens.txt`` as written by the export: ``<token> <id>`` per line, ``▁`` (or the older
    ``<space>``) for a character vocabulary's ``" "``."""
    tokens = []
    for line in path.read_text(encoding="utf-8").splitlines():
        token, index = line.rsplit(" ", 1)
        if int(index) != len(tokens):
            raise ValueError(f"{path}: token ids must be 0, 1, 2...; line {len(tokens) + 1} has {index}")
        tokens.append(" " if token in ("<space>", "\u2581") else token)
    return tokens


class OnnxModel:
    """An export directory loaded once: the streaming graph's session, tokens and metadata.

    ``threads``: onnxruntime intra-op threads (1: one core per stream, as RTFs are reported).
    Streams share the session (``InferenceSession.run`` is thread-safe).
    """

    def __init__(self, export_dir: str | Path, int8: bool = False, threads: int = 1):
        export_dir = Path(export_dir)
        graph = export_dir / ("model.int8.onnx" if int8 else "model.onnx")
        self.meta = open_export(export_dir, graph.name)
        self.tokens = read_tokens(export_dir / "tokens.txt")
        self.bpe = bool(self.meta.get("bpe"))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(graph), opts, providers=["CPUExecutionProvider"])
        self.sample_rate: int = self.meta["sample_rate"]
        self.mean = np.asarray(self.meta["cmvn_mean"], dtype=np.float32)
        self.inv_std = 1.0 / np.asarray(self.meta["cmvn_std"], dtype=np.float32)
        self.output_names = ["logits", *(f"new_{n}" for n in self.meta["state_names"])]

    def initial_states(self) -> list[np.ndarray]:
        return [np.zeros(shape, dtype=dtype)
                for shape, dtype in zip(self.meta["state_shapes"], self.meta["state_dtypes"], strict=True)]

    def run_chunk(self, feats: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """One step: ``(window, F)`` normalised frames + states -> ``(chunk, V)`` logits, new states."""
        inputs = {"x": feats[None], **dict(zip(self.meta["state_names"], states, strict=True))}
        logits, *states = self.session.run(self.output_names, inputs)
        return logits[0], states

    def decode(self, ids: list[int]) -> str:
        """Text of token ids, as asr_kd's tokenizers decode (BPE: ``▁`` starts a word, ``<unk>`` dropped)."""
        if self.bpe:
            return "".join(self.tokens[i] for i in ids if i > 1).replace("▁", " ").strip()
        return "".join(self.tokens[i] for i in ids if i != 0)

    def stream(self) -> OnnxStream:
        return OnnxStream(self)


class OnnxStream:
    """One utterance's recognition state (see module docstring)."""

    def __init__(self, model: OnnxModel):
        self.model = model
        meta = model.meta
        self.window, self.shift = meta["window_frames"], meta["shift_frames"]
        self.fbank = StreamingFbank({**meta["feature"], "sample_rate": meta["sample_rate"]})
        self._feats = np.zeros((0, self.fbank.dim), dtype=np.float32)
        self._states = model.initial_states()
        self._frames_in = self._frames_out = self._last_id = 0
        self._resampler: tuple[int, soxr.ResampleStream] | None = None
        self.token_ids: list[int] = []
        self.logits: list[np.ndarray] = []  # per chunk, (chunk, V)
        self.text = ""
        self.finished = False

    def accept_waveform(self, samples: np.ndarray, sample_rate: int | None = None) -> str:
        """Consume mono float32 samples in [-1, 1] at ``sample_rate`` (default: the model's, else
        resampled with soxr's streaming resampler); returns the partial text."""
        if self.finished:
            raise RuntimeError("finalize() was called: start a new stream")
        if sample_rate and sample_rate != self.model.sample_rate:
            if self._resampler is None:
                self._resampler = soxr.ResampleStream(sample_rate, self.model.sample_rate, 1, dtype="float32")
            samples = self._resampler.resample_chunk(np.asarray(samples, dtype=np.float32))
        return self._accept(samples)

    def _accept(self, samples: np.ndarray) -> str:
        frames = self.fbank.accept(samples)
        if len(frames):
            self._frames_in += len(frames)
            self._feats = np.concatenate([self._feats, (frames - self.model.mean) * self.model.inv_std])
        while len(self._feats) >= self.window:
            self._run(self._feats[: self.window])
        return self.text

    def finalize(self) -> str:
        """Flush the tail (zero frames up to a whole chunk + look-ahead); returns the final text."""
        if not self.finished:
            if self._resampler is not None:
                self._accept(self._resampler.resample_chunk(np.zeros(0, np.float32), last=True))
            self.finished = True
            total_out = -(-self._frames_in // self.model.meta["subsampling_factor"])
            while self._frames_out < total_out:
                pad = np.zeros((max(0, self.window - len(self._feats)), self.fbank.dim), dtype=np.float32)
                self._run(np.concatenate([self._feats, pad])[: self.window])
            self._trim(total_out)
        return self.text

    def _run(self, feats: np.ndarray) -> None:
        logits, self._states = self.model.run_chunk(feats, self._states)
        self._feats = self._feats[self.shift :]
        self.logits.append(logits)
        self._frames_out += len(logits)
        self._emit(logits.argmax(-1).tolist())

    def _emit(self, ids: list[int]) -> None:
        """Greedy CTC continuing across chunks: a token counts when it differs from the frame before."""
        new = False
        for i in ids:
            if i != self._last_id and i != 0:
                self.token_ids.append(i)
                new = True
            self._last_id = i
        if new:
            self.text = self.model.decode(self.token_ids)

    def _trim(self, total_out: int) -> None:
        """Drop the padding frames of the last chunk and redo greedy CTC on the true frames only."""
        logits = np.concatenate(self.logits)[:total_out] if self.logits else np.zeros((0, 0), np.float32)
        self.logits = [logits]
        self.token_ids, self._last_id, self.text = [], 0, ""
        self._emit(logits.argmax(-1).tolist() if len(logits) else [])
        self.text = self.model.decode(self.token_ids)
