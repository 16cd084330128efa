"""The teacher: an offline Conformer-CTC on ``torchaudio.models.Conformer``.

Configs: ``conf/teacher/conformer_small.yaml`` (the demo's), ``conformer_large.yaml`` (100M+).
"""

from __future__ import annotations

import torch
from torch import nn
from torchaudio.models import Conformer

from asr_kd.models.subsampling import ConvSubsampling

__all__ = ["ConformerCTC"]


class ConformerCTC(nn.Module):
    """Conv subsampling (x4) -> Conformer blocks -> linear CTC head over ``vocab_size`` tokens."""

    streaming = False

    def __init__(
        self,
        vocab_size: int,
        input_dim: int = 80,
        d_model: int = 144,
        num_heads: int = 4,
        ffn_dim: int = 576,
        num_layers: int = 8,
        conv_kernel_size: int = 15,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.subsampling = ConvSubsampling(input_dim, d_model)
        self.dropout = nn.Dropout(dropout)
        self.encoder = Conformer(
            input_dim=d_model,
            num_heads=num_heads,
            ffn_dim=ffn_dim,
            num_layers=num_layers,
            depthwise_conv_kernel_size=conv_kernel_size,
            dropout=dropout,
        )
        self.head = nn.Linear(d_model, vocab_size)

    @property
    def subsampling_factor(self) -> int:
        return self.subsampling.factor

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, T, F), (B,) -> logits (B, ceil(T/4), V), lengths (B,)``."""
        x, lengths = self.subsampling(feats, lengths)
        x, lengths = self.encoder(self.dropout(x), lengths)
        return self.head(x), lengths
