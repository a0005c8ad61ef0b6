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


def pointwise_conv(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """A kernel-1 ``conv(x)`` as one batched matrix product with the bias added in the same call."""
    weight = conv.weight.squeeze(-1)
    return torch.baddbmm(conv.bias[None, :, None], weight.expand(x.shape[0], -1, -1), x)


def depthwise_conv(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """A length-preserving depthwise ``conv(x)`` (groups = channels) as a sum of shifted copies of ``x``."""
    kernel, dilation, pad = conv.kernel_size[0], conv.dilation[0], conv.padding[0]
    length = x.shape[-1]
    padded = F.pad(x, (pad, pad))
    out = conv.bias[:, None].expand(-1, length)
    for j in range(kernel):
        out = torch.addcmul(out, conv.weight[:, 0, j, None], padded[..., j * dilation: j * dilation + length])
    return out


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
        # The same computation as ``x + self.net(x)``, with the convolutions written out: on CPU this is
        # 10-15 % faster than the oneDNN kernels for these small shapes (benchmarks/tcn_step.py).
        up, act1, norm1, depthwise, act2, norm2, down = self.net
        y = norm1(act1(pointwise_conv(up, x)))
        y = norm2(act2(depthwise_conv(depthwise, y)))
        return x + pointwise_conv(down, y)


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
        act, out = self.head
        return pointwise_conv(out, act(self.blocks(pointwise_conv(self.bottleneck, self.norm(x)))))


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
