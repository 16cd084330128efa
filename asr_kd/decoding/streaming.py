"""Streaming recognition: feed audio in pieces of any size, get partial and final hypotheses.

The recognizer keeps three states between calls: unconsumed audio samples (the front end
frames Kaldi-style, so features computed piecewise equal those of the whole file), feature
frames not yet consumed by a chunk, and the Emformer's layer states. ``finalize`` flushes the
tail with zero frames exactly as :meth:`asr_kd.models.EmformerCTC.forward` pads it, so a
streamed utterance yields the same logits as the model's chunk-masked full-utterance forward.
"""

from __future__ import annotations

import numpy as np
import torch

from asr_kd.config import instantiate
from asr_kd.decoding.greedy import collapse
from asr_kd.training.checkpoint import Bundle

__all__ = ["StreamingRecognizer"]


class StreamingRecognizer:
    """Greedy-CTC streaming recognizer around a streaming model bundle (e.g. ``student_kd``).

    Usage::

        rec = StreamingRecognizer(load_bundle("exp/demo/models/student_kd/model.pt"))
        for piece in pieces:            # any length: 10 ms ... 1 s
            partial = rec.accept_waveform(piece)
        text = rec.finalize()           # then rec.reset() for the next utterance
    """

    def __init__(self, bundle: Bundle):
        model = bundle.model
        if not getattr(model, "streaming", False):
            raise ValueError(f"{type(model).__name__} is not a streaming model")
        self.model, self.tokenizer, self.cmvn = model, bundle.tokenizer, bundle.cmvn
        frontend_cfg = {k: v for k, v in bundle.frontend.items() if k not in ("backend", "fingerprint")}
        self.frontend = instantiate({"_target_": f"asr_kd.features.frontend.{bundle.frontend['backend']}",
                                     **frontend_cfg})
        self.step = model.chunk_frames * model.subsampling_factor  # feature frames per chunk
        self.window = model.chunk_input_frames  # chunk + look-ahead
        self.reset()

    def reset(self) -> None:
        """Forget everything: ready for a new utterance."""
        self._samples = np.zeros(0, dtype=np.float32)
        self._feats = torch.zeros(0, self.frontend.num_mel_bins)
        self._state = None
        self._frames_in = 0  # feature frames received
        self._frames_out = 0  # encoder frames emitted
        self._last_id = 0
        self.token_ids: list[int] = []
        self.logits: list[torch.Tensor] = []

    @property
    def text(self) -> str:
        """The hypothesis so far."""
        return self.tokenizer.decode(self.token_ids)

    def accept_waveform(self, samples: np.ndarray) -> str:
        """Consume mono float32 samples at the model's sample rate; returns the partial hypothesis."""
        self._samples = np.concatenate([self._samples, np.asarray(samples, dtype=np.float32)])
        n = self.frontend.num_frames(len(self._samples))
        if n:
            feats = self.frontend(self._samples[: self.frontend.window + (n - 1) * self.frontend.shift])
            self._samples = self._samples[n * self.frontend.shift :]
            self._feats = torch.cat([self._feats, self.cmvn(feats)])
            self._frames_in += n
        while len(self._feats) >= self.window:
            self._run_chunk(self._feats[: self.window])
            self._feats = self._feats[self.step :]
        return self.text

    def finalize(self) -> str:
        """Flush the remaining frames (zero-padded to a whole chunk) and return the final text."""
        total_out = -(-self._frames_in // self.model.subsampling_factor)
        while self._frames_out < total_out:
            pad = torch.zeros(max(0, self.window - len(self._feats)), self.frontend.num_mel_bins)
            self._run_chunk(torch.cat([self._feats, pad])[: self.window])
            self._feats = self._feats[self.step :]
        self.logits = [torch.cat(self.logits)[:total_out]] if self.logits else []
        self.token_ids = collapse(self.logits[0].argmax(-1).tolist()) if self.logits else []
        return self.text

    def _run_chunk(self, feats: torch.Tensor) -> None:
        logits, self._state = self.model.stream_chunk(feats.unsqueeze(0), self._state)
        logits = logits[0]
        self.logits.append(logits)
        self._frames_out += len(logits)
        ids = logits.argmax(-1).tolist()
        self.token_ids += collapse(ids, previous=self._last_id)
        self._last_id = ids[-1]
