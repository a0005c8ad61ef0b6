"""Conv-TasNet temporal convolutional network (TCN), shared by the teacher back-end and the proxy's Psi.

Shapes are ``(batch, channels, time)`` throughout; every module keeps the time length unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GlobalLayerNorm(nn.Module):
    """Global layer norm (gLN, Luo & Mesgarani 2019): normalise over channels *and* time, per example.

    ``y = gamma * (x - mean) / sqrt(var + eps) + beta`` with one mean and variance per example, and a
    learned per-channel ``gamma`` and ``beta``.
    """

    def __init__(self, channels: int, eps: float = 1e-8):
        super().__init__()
        self.channels = channels
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(1, channels, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # GroupNorm with a single group is exactly gLN (one mean/variance per example over channels and
        # time, per-channel affine), and its fused kernel is several times faster than the explicit form.
        return F.group_norm(x, 1, self.gamma.view(-1), self.beta.view(-1), self.eps)

    def extra_repr(self) -> str:
        return f"{self.channels}, eps={self.eps}"


class TemporalBlock(nn.Module):
    """One residual block: 1x1 conv up to ``hidden`` -> PReLU -> gLN -> dilated depthwise conv -> PReLU ->
    gLN -> 1x1 conv back to ``bottleneck``, added to the input."""

    def __init__(self, bottleneck: int = 64, hidden: int = 128, kernel: int = 3, dilation: int = 1):
        super().__init__()
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"TCN kernel size must be odd (length-preserving padding), got {kernel}")
        self.net = nn.Sequential(
            nn.Conv1d(bottleneck, hidden, 1),
            nn.PReLU(),
            GlobalLayerNorm(hidden),
            nn.Conv1d(hidden, hidden, kernel, dilation=dilation, padding=dilation * (kernel - 1) // 2,
                      groups=hidden),
            nn.PReLU(),
            GlobalLayerNorm(hidden),
            nn.Conv1d(hidden, bottleneck, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class TCN(nn.Module):
    """gLN(in) -> Conv1d(in, B, 1) -> ``repeats`` x [blocks with dilations 1, 2, ..., 2**(blocks-1)]
    -> PReLU -> Conv1d(B, out, 1).

    With ``in_channels=1024, out_channels=4`` and the defaults this is the teacher back-end of the paper
    (15 blocks, about 0.33 M parameters).
    """

    def __init__(self, in_channels: int, out_channels: int, bottleneck: int = 64, hidden: int = 128,
                 kernel: int = 3, blocks: int = 3, repeats: int = 5):
        super().__init__()
        if blocks < 1 or repeats < 1:
            raise ValueError(f"TCN needs blocks >= 1 and repeats >= 1, got blocks={blocks}, repeats={repeats}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.norm = GlobalLayerNorm(in_channels)
        self.bottleneck = nn.Conv1d(in_channels, bottleneck, 1)
        self.blocks = nn.Sequential(*[
            TemporalBlock(bottleneck, hidden, kernel, dilation=2 ** b)
            for _ in range(repeats) for b in range(blocks)
        ])
        self.head = nn.Sequential(nn.PReLU(), nn.Conv1d(bottleneck, out_channels, 1))
        self.receptive_field = 1 + (kernel - 1) * repeats * sum(2 ** b for b in range(blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.bottleneck(self.norm(x))))


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
