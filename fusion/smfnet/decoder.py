"""The shared decoder: transformer blocks, then conv3x3 C -> C/2 -> C/4 -> 1 with LeakyReLU(0.01)
between them (no biases) and a sigmoid; no skip connection from the input image (as released)."""
from __future__ import annotations

import torch
from torch import nn

from fusion.smfnet.blocks import TransformerBlock
from fusion.smfnet.config import SMFNetConfig


class Decoder(nn.Module):
    """(B, C, H, W) feature -> (B, 1, H, W) image in (0, 1)."""

    def __init__(self, config: SMFNetConfig):
        super().__init__()
        c = config.channels
        self.transformer = nn.Sequential(*(TransformerBlock(c, config.heads, config.leff_hidden)
                                           for _ in range(config.decoder_blocks)))
        self.head = nn.Sequential(
            nn.Conv2d(c, c // 2, 3, padding=1, bias=False), nn.LeakyReLU(),
            nn.Conv2d(c // 2, c // 4, 3, padding=1, bias=False), nn.LeakyReLU(),
            nn.Conv2d(c // 4, 1, 3, padding=1, bias=False))

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.head(self.transformer(feature)))
