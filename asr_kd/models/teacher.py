"""The teacher: an offline Conformer-CTC on ``torchaudio.models.Conformer``.

Configs: ``conf/teacher/conformer_small.yaml`` (the demo's), ``conformer_large.yaml`` (100M+).

torchaudio's Conformer masks padding in self-attention only; its depthwise convolutions read
the padded frames of shorter utterances in a batch, so a batched forward (training, the cache
stage) would give other posteriors than the same utterance alone. Each depthwise convolution here
zeroes padded frames first, which makes a padded frame look like the convolution's own zero
padding: outputs on valid frames no longer depend on what else is in the batch.
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
        self._depthwise = []
        for layer in self.encoder.conformer_layers:
            conv = layer.conv_module.sequential[2]
            masked = _PaddingMaskedConv1d(conv.in_channels, conv.out_channels, conv.kernel_size,
                                          padding=conv.padding, groups=conv.groups,
                                          bias=conv.bias is not None)
            layer.conv_module.sequential[2] = masked  # same parameter names: checkpoints still load
            self._depthwise.append(masked)

    @property
    def subsampling_factor(self) -> int:
        return self.subsampling.factor

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, T, F), (B,) -> logits (B, ceil(T/4), V), lengths (B,)``."""
        x, lengths = self.subsampling(feats, lengths)
        padding = torch.arange(x.shape[1], device=x.device)[None] >= lengths[:, None]  # (B, T')
        for conv in self._depthwise:
            conv.padding_mask = padding
        try:
            x, lengths = self.encoder(self.dropout(x), lengths)
        finally:
            for conv in self._depthwise:
                conv.padding_mask = None
        return self.head(x), lengths


class _PaddingMaskedConv1d(nn.Conv1d):
    """A Conv1d over ``(B, C, T)`` that first zeroes the frames ``padding_mask`` ``(B, T)`` marks
    (set by :class:`ConformerCTC` around each forward)."""

    padding_mask: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding_mask is not None:
            x = x.masked_fill(self.padding_mask[:, None, :], 0.0)
        return super().forward(x)
