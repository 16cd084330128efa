"""The student: a streaming Emformer-CTC on ``torchaudio.models.Emformer``.

Frame stacking (x4, causal) -> causal depthwise convolution -> Emformer (chunks of ``chunk_frames``
encoder frames, each seeing ``left_context_frames`` of the past and ``right_context_frames`` of
look-ahead) -> CTC head.
:meth:`EmformerCTC.forward` on a whole utterance equals feeding it chunk by chunk through
:meth:`EmformerCTC.stream_chunk` (the tail zero-padded to a whole chunk in both), which is what
makes "streaming" a property of the model rather than of how files are cut.

Chunk size sets the latency: ``chunk_frames`` 4 / 8 / 16 encoder frames of 40 ms are 160 / 320 /
640 ms chunks. With ``dynamic_chunks`` (dynamic chunk training, as WeNet's U2) each training
forward draws its chunk size from that list, so one model serves all of those latencies: pass
``chunk_frames=`` to :meth:`forward` (or feed :meth:`stream_chunk` windows of that size) to pick
one at inference. The left context (in encoder frames) does not depend on the chunk size.

torchaudio's Emformer has no positional encoding, so within a chunk its attention sees a bag of
frames. A residual causal depthwise convolution over the stacked frames (``conv_kernel`` frames,
past only) gives each frame its recent history and hence its order; on 2 CPU cores it roughly
halves the steps the student needs to reach a given WER. It streams with a ``conv_kernel - 1``
frame cache, so it adds no look-ahead. ``conv_kernel`` defaults to 0 (no convolution) so bundles
saved before it existed still load; ``conf/student/emformer_small.yaml`` turns it on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn
from torchaudio.models import Emformer

from asr_kd.models.subsampling import StackSubsampling

__all__ = ["EmformerCTC"]


class EmformerCTC(nn.Module):
    """Streaming student. Latency: chunk + right context (in encoder frames of 40 ms).

    Args:
        vocab_size: output tokens (blank = 0), a run-time fact.
        input_dim: feature bins.
        d_model, num_heads, ffn_dim, num_layers, dropout: Emformer size.
        chunk_frames: default chunk (segment) length in encoder frames (8 = 320 ms).
        left_context_frames: encoder frames of the past each chunk attends to.
        right_context_frames: encoder frames of look-ahead per chunk.
        conv_kernel: frames of the causal depthwise convolution before the Emformer (0: none).
        dynamic_chunks: chunk sizes to draw from, uniformly, at each training forward
            (``None``: always ``chunk_frames``). Evaluation always uses ``chunk_frames``
            unless a forward is given another.
    """

    streaming = True

    def __init__(
        self,
        vocab_size: int,
        input_dim: int = 80,
        d_model: int = 96,
        num_heads: int = 4,
        ffn_dim: int = 384,
        num_layers: int = 6,
        chunk_frames: int = 8,
        left_context_frames: int = 32,
        right_context_frames: int = 1,
        dropout: float = 0.1,
        conv_kernel: int = 0,
        dynamic_chunks: Sequence[int] | None = None,
    ):
        super().__init__()
        if dynamic_chunks is not None and (not dynamic_chunks or min(dynamic_chunks) < 1):
            raise ValueError(f"dynamic_chunks must list positive chunk sizes, got {dynamic_chunks!r}")
        self.chunk_frames = chunk_frames
        self.left_context_frames = left_context_frames
        self.right_context_frames = right_context_frames
        self.dynamic_chunks = tuple(dynamic_chunks) if dynamic_chunks else None
        self.subsampling = StackSubsampling(input_dim, d_model)
        self.conv_kernel = conv_kernel
        self.conv = nn.Conv1d(d_model, d_model, conv_kernel, groups=d_model) if conv_kernel > 0 else None
        self.encoder = Emformer(
            input_dim=d_model,
            num_heads=num_heads,
            ffn_dim=ffn_dim,
            num_layers=num_layers,
            segment_length=chunk_frames,
            left_context_length=left_context_frames,
            right_context_length=right_context_frames,
            dropout=dropout,
            max_memory_size=0,
        )
        self.head = nn.Linear(d_model, vocab_size)

    @property
    def subsampling_factor(self) -> int:
        return self.subsampling.factor

    def forward(
        self, feats: torch.Tensor, lengths: torch.Tensor, chunk_frames: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Chunk-masked full-utterance pass: ``(B, T, F), (B,) -> (B, ceil(T/4), V), (B,)``.

        ``chunk_frames``: chunk size for this pass; by default ``self.chunk_frames``, or in training
        mode with ``dynamic_chunks`` one drawn from that list.
        """
        chunk = chunk_frames or self._training_chunk()
        b, t, f = feats.shape
        out_t = -(-t // self.subsampling_factor)
        # Zero-pad the *features* to whole chunks plus look-ahead, exactly as a stream is flushed.
        padded_t = -(-out_t // chunk) * chunk + self.right_context_frames
        feats = torch.cat([feats, feats.new_zeros(b, padded_t * self.subsampling_factor - t, f)], dim=1)
        x, out_lengths = self.subsampling(feats, lengths)
        x = self._causal_conv(x, x.new_zeros(b, max(self.conv_kernel - 1, 0), x.shape[-1]))
        chunk_lengths = -(-out_lengths // chunk) * chunk
        with self._chunking(chunk):
            y, _ = self.encoder(x, chunk_lengths)
        return self.head(y[:, :out_t]), out_lengths

    @property
    def chunk_input_frames(self) -> int:
        """Feature frames one streaming step consumes at the default chunk size."""
        return self.stream_window(self.chunk_frames)

    def stream_window(self, chunk_frames: int) -> int:
        """Feature frames one streaming step consumes: chunk + right context, before subsampling."""
        return (chunk_frames + self.right_context_frames) * self.subsampling_factor

    def _causal_conv(self, x: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        """``x + conv(x)`` over time, each frame seeing ``history`` (the frames before ``x``) and ``x``."""
        if self.conv is None:
            return x
        return x + self.conv(torch.cat([history, x], dim=1).transpose(1, 2)).transpose(1, 2)

    def stream_chunk(self, feats: torch.Tensor, state: tuple | None) -> tuple[torch.Tensor, tuple]:
        """One streaming step on ``(1, (chunk + right_context) * 4, F)`` features.

        The chunk size is read from the input's length (so a model trained with dynamic chunks
        streams at any of them). The last ``right_context_frames * 4`` frames are look-ahead only;
        the next call must start right after the chunk proper (i.e. overlap by the look-ahead).
        Returns ``(1, chunk, V)`` logits and the new state (``None`` starts an utterance): the
        convolution's last ``conv_kernel - 1`` chunk frames and the Emformer's layer states.
        """
        chunk = feats.shape[1] // self.subsampling_factor - self.right_context_frames
        if chunk < 1 or feats.shape[1] != self.stream_window(chunk):
            raise ValueError(f"stream_chunk needs (1, (chunk + {self.right_context_frames}) * "
                             f"{self.subsampling_factor}, F) features, got {tuple(feats.shape)}")
        with torch.inference_mode(), self._chunking(chunk):
            x, _ = self.subsampling(feats, torch.tensor([feats.shape[1]]))
            if state is None:
                state = (x.new_zeros(1, max(self.conv_kernel - 1, 0), x.shape[-1]), None)
            history, layers = state
            y, _, layers = self.encoder.infer(self._causal_conv(x, history), torch.tensor([x.shape[1]]),
                                              layers)
            # the next window starts right after this chunk proper: keep the frames just before it
            history = torch.cat([history, x[:, :chunk]], dim=1)[:, chunk:]
            return self.head(y), (history, layers)

    def _training_chunk(self) -> int:
        if self.training and self.dynamic_chunks:
            return self.dynamic_chunks[int(torch.randint(len(self.dynamic_chunks), ()))]
        return self.chunk_frames

    @contextlib.contextmanager
    def _chunking(self, chunk: int) -> Iterator[None]:
        """Run the Emformer with segment length ``chunk`` (it reads it on every call; no memory bank,
        so nothing else depends on it)."""
        previous = self.encoder.segment_length
        self.encoder.segment_length = chunk
        try:
            yield
        finally:
            self.encoder.segment_length = previous
