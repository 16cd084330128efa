"""The student: a streaming Emformer-CTC on ``torchaudio.models.Emformer``.

Frame stacking (x4, causal) -> Emformer (segments of ``chunk_frames`` encoder frames, each seeing
``left_context_frames`` of the past and ``right_context_frames`` of look-ahead) -> CTC head.
:meth:`EmformerCTC.forward` on a whole utterance equals feeding it chunk by chunk through
:meth:`EmformerCTC.stream_chunk` (the tail zero-padded to a whole chunk in both), which is what
makes "streaming" a property of the model rather than of how files are cut.
"""

from __future__ import annotations

import torch
from torch import nn
from torchaudio.models import Emformer

from asr_kd.models.subsampling import StackSubsampling

__all__ = ["EmformerCTC"]


class EmformerCTC(nn.Module):
    """Streaming student. Latency: chunk + right context (in encoder frames of 40 ms)."""

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
    ):
        super().__init__()
        self.chunk_frames = chunk_frames
        self.right_context_frames = right_context_frames
        self.subsampling = StackSubsampling(input_dim, d_model)
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

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Chunk-masked full-utterance pass: ``(B, T, F), (B,) -> (B, ceil(T/4), V), (B,)``."""
        b, t, f = feats.shape
        out_t = -(-t // self.subsampling_factor)
        # Zero-pad the *features* to whole chunks plus look-ahead, exactly as a stream is flushed.
        padded_t = (-(-out_t // self.chunk_frames) * self.chunk_frames + self.right_context_frames)
        feats = torch.cat([feats, feats.new_zeros(b, padded_t * self.subsampling_factor - t, f)], dim=1)
        x, out_lengths = self.subsampling(feats, lengths)
        chunk_lengths = -(-out_lengths // self.chunk_frames) * self.chunk_frames
        y, _ = self.encoder(x, chunk_lengths)
        return self.head(y[:, :out_t]), out_lengths

    @property
    def chunk_input_frames(self) -> int:
        """Feature frames one streaming step consumes (chunk + right context, before subsampling)."""
        return (self.chunk_frames + self.right_context_frames) * self.subsampling_factor

    @torch.no_grad()
    def stream_chunk(
        self, feats: torch.Tensor, state: list[list[torch.Tensor]] | None
    ) -> tuple[torch.Tensor, list[list[torch.Tensor]]]:
        """One streaming step on ``(1, chunk_input_frames, F)`` features.

        The last ``right_context_frames * 4`` frames are look-ahead only; the next call must start
        right after the chunk proper (i.e. overlap by the look-ahead). Returns ``(1, chunk, V)``.
        """
        x, _ = self.subsampling(feats, torch.tensor([feats.shape[1]]))
        y, _, state = self.encoder.infer(x, torch.tensor([x.shape[1]]), state)
        return self.head(y), state
