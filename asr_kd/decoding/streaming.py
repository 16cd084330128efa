"""Streaming recognition: feed audio in pieces of any size, get partial and final hypotheses.

The recognizer keeps three states between calls: unconsumed audio samples (the front end
frames Kaldi-style, so features computed piecewise equal those of the whole file), feature
frames not yet consumed by a chunk, and the model's streaming state (``stream_chunk``'s: layer
states, caches). ``finalize`` flushes the tail with zero frames exactly as the streaming models'
``forward`` pads it (:class:`asr_kd.models.EmformerCTC`, :class:`asr_kd.models.ChunkConformerCTC`),
so a streamed utterance yields the same logits as the model's chunk-masked full-utterance forward.

Cost: a piece only appends samples to a buffer. The front end runs once enough samples are
buffered for the next whole chunk + look-ahead (once per chunk for small pieces, so the
filterbank's fixed per-call cost is paid once per chunk, not once per 10 ms), and the encoder
runs once per chunk. Callers that report RTF pin threads themselves
(``torch.set_num_threads(1)``), as the decode stage does.
"""

from __future__ import annotations

import numpy as np
import torch

from asr_kd.decoding.offline import bundle_frontend
from asr_kd.models.bundle import Bundle

__all__ = ["StreamingRecognizer", "algorithmic_latency_ms"]


def algorithmic_latency_ms(model, frontend: dict, chunk_frames: int | None = None) -> float:
    """Worst-case audio a streaming model waits for before it can emit: chunk + right context
    (encoder frames of ``subsampling * frame shift``) + one feature window. ``frontend``: a bundle's."""
    chunk = chunk_frames or model.chunk_frames
    frame_ms = model.subsampling_factor * frontend["frame_shift_ms"]
    return (chunk + model.right_context_frames) * frame_ms + frontend["frame_length_ms"]


class StreamingRecognizer:
    """Greedy-CTC streaming recognizer around a streaming model bundle (e.g. ``student_kd``).

    Usage::

        rec = StreamingRecognizer(load_bundle("exp/demo/models/student_kd/model.pt"))
        for piece in pieces:            # any length: 10 ms ... 1 s, float32 at rec.sample_rate
            partial = rec.accept_waveform(piece)
        text = rec.finalize()           # then rec.reset() for the next utterance

    ``chunk_frames`` streams at another chunk size than the model's default (for models trained
    with dynamic chunks). After each call, ``token_ids`` / ``token_frames`` hold the tokens emitted
    so far and the encoder frame each came from; after :meth:`finalize`, ``logits`` is the
    utterance's ``(T', V)`` logits (unless ``keep_logits=False``: memory bounded whatever the length).
    """

    def __init__(self, bundle: Bundle, chunk_frames: int | None = None, keep_logits: bool = True):
        model = bundle.model
        if not getattr(model, "streaming", False):
            raise ValueError(f"{type(model).__name__} is not a streaming model")
        self.model, self.tokenizer, self.cmvn = model, bundle.tokenizer, bundle.cmvn
        self.frontend = bundle_frontend(bundle)
        self.sample_rate: int = self.frontend.sample_rate
        self.chunk_frames: int = chunk_frames or model.chunk_frames
        self.keep_logits = keep_logits
        self.algorithmic_latency_ms = algorithmic_latency_ms(model, bundle.frontend, self.chunk_frames)
        self.step = self.chunk_frames * model.subsampling_factor  # feature frames per chunk
        self.window = model.stream_window(self.chunk_frames)  # chunk + look-ahead
        self.reset()

    def reset(self) -> None:
        """Forget everything: ready for a new utterance."""
        self._buf = np.zeros(self.frontend.window + self.window * self.frontend.shift, dtype=np.float32)
        self._buffered = 0  # samples in _buf not yet turned into feature frames
        self._feats = torch.zeros(0, self.frontend.num_mel_bins)  # normalised, not yet in a chunk
        self._state = None
        self._frames_in = 0  # feature frames computed
        self._frames_out = 0  # encoder frames emitted
        self._last_id = 0
        self._finished = False
        self._text = ""
        self.samples_in = 0
        self.token_ids: list[int] = []
        self.token_frames: list[int] = []
        self.logits = torch.zeros(0, self.model.head.out_features)
        self._chunk_logits: list[torch.Tensor] = []

    @property
    def text(self) -> str:
        """The hypothesis so far."""
        return self._text

    def accept_waveform(self, samples: np.ndarray) -> str:
        """Consume mono float32 samples at ``sample_rate``; returns the partial hypothesis."""
        if self._finished:
            raise RuntimeError("finalize() was called: reset() before the next utterance")
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        self._append(samples)
        need = self.window - len(self._feats)  # feature frames missing for the next chunk
        if self._buffered >= self.frontend.window + (need - 1) * self.frontend.shift:
            with torch.inference_mode():
                self._extract()
                while len(self._feats) >= self.window:
                    self._run_chunk(self._feats[: self.window])
                    self._feats = self._feats[self.step :]
        return self._text

    def finalize(self) -> str:
        """Flush the remaining frames (zero-padded to a whole chunk) and return the final text."""
        if not self._finished:
            self._finished = True
            with torch.inference_mode():
                self._extract()
                total_out = -(-self._frames_in // self.model.subsampling_factor)
                while self._frames_out < total_out:
                    pad = torch.zeros(max(0, self.window - len(self._feats)), self.frontend.num_mel_bins)
                    self._run_chunk(torch.cat([self._feats, pad])[: self.window], total_out)
                    self._feats = self._feats[self.step :]
                if self._chunk_logits:
                    self.logits = torch.cat(self._chunk_logits)[:total_out]
            self._text = self.tokenizer.decode(self.token_ids)
        return self._text

    def _append(self, samples: np.ndarray) -> None:
        end = self._buffered + len(samples)
        if end > len(self._buf):
            grown = np.zeros(max(end, 2 * len(self._buf)), dtype=np.float32)
            grown[: self._buffered] = self._buf[: self._buffered]
            self._buf = grown
        self._buf[self._buffered : end] = samples
        self._buffered = end
        self.samples_in += len(samples)

    def _extract(self) -> None:
        """Turn every whole frame's worth of buffered samples into normalised features."""
        n = self.frontend.num_frames(self._buffered)
        if not n:
            return
        used = self.frontend.window + (n - 1) * self.frontend.shift
        feats = self.cmvn(self.frontend(self._buf[:used]))
        consumed = n * self.frontend.shift
        rest = self._buffered - consumed
        self._buf[:rest] = self._buf[consumed : self._buffered]
        self._buffered = rest
        self._feats = torch.cat([self._feats, feats]) if len(self._feats) else feats
        self._frames_in += n

    def _run_chunk(self, feats: torch.Tensor, total_out: int | None = None) -> None:
        """Run one chunk; the frames of a zero-padded last chunk past ``total_out`` are dropped."""
        logits, self._state = self.model.stream_chunk(feats.unsqueeze(0), self._state)
        logits = logits[0][: None if total_out is None else total_out - self._frames_out]
        if self.keep_logits:
            self._chunk_logits.append(logits)
        self._emit(logits.argmax(-1).tolist(), self._frames_out)
        self._frames_out += len(logits)

    def _emit(self, ids: list[int], first_frame: int) -> None:
        """Greedy CTC (as :func:`asr_kd.models.ctc.collapse`) continuing the stream; records
        each new token's encoder frame."""
        previous, new = self._last_id, False
        for t, i in enumerate(ids, first_frame):
            if i != previous and i != 0:
                self.token_ids.append(i)
                self.token_frames.append(t)
                new = True
            previous = i
        if ids:
            self._last_id = ids[-1]
        if new:
            self._text = self.tokenizer.decode(self.token_ids)
