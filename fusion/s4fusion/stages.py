"""Encoder and decoder stages: a few VSS blocks with a patch merging after / a patch expanding before."""
from __future__ import annotations

import torch
from torch import nn

from fusion.s4fusion.layers import PatchExpanding, PatchMerging
from fusion.s4fusion.ss2d import VSSBlock


class EncoderStage(nn.Module):
    """VSS blocks, then patch merging (C -> 2C, half resolution) unless it is the last stage."""

    def __init__(self, dim: int, depth: int, d_state: int, expand: float, downsample: bool, drop_path: list[float]):
        super().__init__()
        self.blocks = nn.ModuleList(VSSBlock(dim, d_state, expand, p) for p in drop_path[:depth])
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x) if self.downsample is not None else x


class DecoderStage(nn.Module):
    """Optional patch expanding (2C -> C, double resolution), then VSS blocks at ``dim`` channels."""

    def __init__(self, dim: int, depth: int, d_state: int, expand: float, upsample: bool, drop_path: list[float]):
        super().__init__()
        self.upsample = PatchExpanding(2 * dim) if upsample else None
        self.blocks = nn.ModuleList(VSSBlock(dim, d_state, expand, p) for p in drop_path[:depth])

    def up(self, x: torch.Tensor) -> torch.Tensor:
        return self.upsample(x) if self.upsample is not None else x

    def refine(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x
