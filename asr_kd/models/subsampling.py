"""Front ends that reduce the frame rate by 4 (10 ms -> 40 ms): both give ``ceil(T / 4)`` frames."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ConvSubsampling", "StackSubsampling", "subsampled_lengths"]


def subsampled_lengths(lengths: torch.Tensor, factor: int) -> torch.Tensor:
    """Output frames of a ``factor``-times subsampling front end: ``ceil(lengths / factor)``."""
    return torch.div(lengths + factor - 1, factor, rounding_mode="floor")


class ConvSubsampling(nn.Module):
    """Two stride-2 3x3 convolutions (padding 1) then a projection: the usual offline front end."""

    factor = 4

    def __init__(self, in_dim: int, out_dim: int, channels: int = 64):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, channels, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.proj = nn.Linear(channels * ((in_dim + 3) // 4), out_dim)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, T, F) -> (B, ceil(T/4), D)``; frames past each utterance's end are zeroed after the
        first convolution, as its own padding would be, so batching does not change the output."""
        x = self.conv[1](self.conv[0](x.unsqueeze(1)))  # (B, C, ceil(T/2), F')
        past_end = torch.arange(x.shape[2], device=x.device)[None] >= subsampled_lengths(lengths, 2)[:, None]
        x = x.masked_fill(past_end[:, None, :, None], 0.0)
        x = self.conv[3](self.conv[2](x))  # (B, C, ceil(T/4), F'')
        x = self.proj(x.transpose(1, 2).flatten(2))
        return x, subsampled_lengths(lengths, self.factor)


class StackSubsampling(nn.Module):
    """Stack 4 consecutive frames then project: causal, so it streams with no look-ahead."""

    factor = 4

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.proj = nn.Linear(in_dim * self.factor, out_dim)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, T, F) -> (B, ceil(T/4), D)``; the tail is zero-padded to a multiple of 4."""
        b, t, f = x.shape
        pad = (-t) % self.factor
        if pad:
            x = torch.cat([x, x.new_zeros(b, pad, f)], dim=1)
        x = x.reshape(b, (t + pad) // self.factor, f * self.factor)
        return self.proj(x), subsampled_lengths(lengths, self.factor)
