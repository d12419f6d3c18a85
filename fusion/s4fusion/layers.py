"""Resolution-changing pieces of the U-shaped network, all channels-last (B, H, W, C).

Overlap patch embedding (OPE) in, patch merging down, patch expanding up, and the fold head out.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fusion.s4fusion.geometry import PATCH, STRIDE


class OverlapPatchEmbed(nn.Module):
    """Conv(1 -> C, 4x4, stride 3) + LayerNorm: adjacent 4x4 patches share one pixel row/column."""

    def __init__(self, in_chans: int = 1, dim: int = 48):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=PATCH, stride=STRIDE)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class PatchMerging(nn.Module):
    """2x2 neighbourhood concat -> LN -> Linear(4C -> 2C): halves the resolution."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]]
        return self.reduction(self.norm(torch.cat(parts, dim=-1)))


class PatchExpanding(nn.Module):
    """Linear(C -> 2C), pixel-shuffle 2x, LN: doubles the resolution and halves the channels."""

    def __init__(self, in_dim: int):
        super().__init__()
        self.expand = nn.Linear(in_dim, 2 * in_dim, bias=False)
        self.norm = nn.LayerNorm(in_dim // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        x = self.expand(x).view(b, h, w, 2, 2, c // 2)
        x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, 2 * h, 2 * w, c // 2)
        return self.norm(x)


class FoldHead(nn.Module):
    """Linear(C -> 16 * C/4) per token, fold the overlapping 4x4 patches back (sums overlaps), 1x1 conv -> 1.

    ``norm`` exists in the released weights but their forward never applies it; it is kept so those
    weights load strictly and the parameter count matches, and it is not applied here either.
    """

    def __init__(self, dim: int = 48, out_chans: int = 1):
        super().__init__()
        self.expand = nn.Linear(dim, PATCH * PATCH * (dim // 4), bias=False)
        self.norm = nn.LayerNorm(dim // 4)
        self.conv = nn.Conv2d(dim // 4, out_chans, 1)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        columns = self.expand(x).flatten(1, 2).transpose(1, 2)  # (B, 16 * C', h * w)
        return self.conv(F.fold(columns, size, kernel_size=PATCH, stride=STRIDE))
