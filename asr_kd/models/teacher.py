"""The teacher: an offline Conformer-CTC on ``torchaudio.models.Conformer``.

Configs: ``conf/teacher/conformer_small.yaml`` (the demo's), ``conformer_large.yaml`` (100M+).

torchaudio's Conformer masks padding in self-attention only: its depthwise convolutions read the
padded frames of shorter utterances in a batch, and its BatchNorm counts them in its statistics.
So a batched forward (training, the cache stage) would give other posteriors than the same
utterance alone, and training would normalise by statistics that depend on how much padding each
batch holds. Here each depthwise convolution zeroes padded frames first (a padded frame then looks
like the convolution's own zero padding) and each BatchNorm estimates its statistics on valid
frames only: outputs on valid frames no longer depend on what else is in the batch. The two go
together: masking the convolutions alone turned padded frames into constants that BatchNorm then
averaged in, and the FSDD teacher trained far worse (dev WER 67% instead of 7-14% at step 400).
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
        subsampling_channels: int = 64,
    ):
        super().__init__()
        self.subsampling = ConvSubsampling(input_dim, d_model, channels=subsampling_channels)
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
        self._padding_aware = []
        for layer in self.encoder.conformer_layers:  # same parameter names: checkpoints still load
            block = layer.conv_module.sequential
            conv, norm = block[2], block[3]
            block[2] = _PaddingMaskedConv1d(conv.in_channels, conv.out_channels, conv.kernel_size,
                                            padding=conv.padding, groups=conv.groups,
                                            bias=conv.bias is not None)
            block[3] = _PaddingMaskedBatchNorm1d(norm.num_features, eps=norm.eps, momentum=norm.momentum)
            self._padding_aware += [block[2], block[3]]

    @property
    def subsampling_factor(self) -> int:
        return self.subsampling.factor

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, T, F), (B,) -> logits (B, ceil(T/4), V), lengths (B,)``."""
        x, lengths = self.subsampling(feats, lengths)
        padding = torch.arange(x.shape[1], device=x.device)[None] >= lengths[:, None]  # (B, T')
        for module in self._padding_aware:
            module.padding_mask = padding
        try:
            x, lengths = self.encoder(self.dropout(x), lengths)
        finally:
            for module in self._padding_aware:
                module.padding_mask = None
        return self.head(x), lengths


class _PaddingMaskedConv1d(nn.Conv1d):
    """A Conv1d over ``(B, C, T)`` that first zeroes the frames ``padding_mask`` ``(B, T)`` marks
    (set by :class:`ConformerCTC` around each forward)."""

    padding_mask: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding_mask is not None:
            x = x.masked_fill(self.padding_mask[:, None, :], 0.0)
        return super().forward(x)


class _PaddingMaskedBatchNorm1d(nn.BatchNorm1d):
    """A BatchNorm1d over ``(B, C, T)`` whose training statistics (batch and running) come from
    the frames ``padding_mask`` ``(B, T)`` leaves unmarked; evaluation uses the running ones."""

    padding_mask: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.padding_mask is None:
            return super().forward(x)
        valid = ~self.padding_mask
        normed = super().forward(x.transpose(1, 2)[valid])  # (valid frames, C): the fused kernel
        out = normed.new_zeros(x.shape[0], x.shape[2], x.shape[1])  # padded frames: 0
        out[valid] = normed
        return out.transpose(1, 2)
