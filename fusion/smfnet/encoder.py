"""The shared encoder (run once on I, once on V): a stem and transformer give the shallow feature
Phi_S; the cross-attention interaction (CAI) gives the detail feature Phi_D and the base feature
extractor (BFE) the base feature Phi_B."""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from fusion.smfnet.blocks import GRDB, CrossAttention, InvertedResidualBlock, TransformerBase, TransformerBlock
from fusion.smfnet.config import SMFNetConfig


class EncoderFeatures(NamedTuple):
    shallow: torch.Tensor  # Phi_S, the graph's input
    detail: torch.Tensor  # Phi_D
    base: torch.Tensor  # Phi_B


class DetailNode(nn.Module):
    """CDDFuse's affine coupling: 1x1 mix, split (a, b); b += phi(a); a = a * exp(rho(b)) + eta(b)."""

    def __init__(self, config: SMFNetConfig):
        super().__init__()
        c, half, expand = config.channels, config.half, config.irb_expand
        self.mix = nn.Conv2d(c, c, 1)
        self.phi = InvertedResidualBlock(half, half, expand)
        self.rho = InvertedResidualBlock(half, half, expand)
        self.eta = InvertedResidualBlock(half, half, expand)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        a, b = self.mix(torch.cat((a, b), dim=1)).chunk(2, dim=1)
        b = b + self.phi(a)
        a = a * torch.exp(self.rho(b)) + self.eta(b)
        return torch.cat((a, b), dim=1)


class CrossAttentionInteraction(nn.Module):
    """CAI (Eq. 1-2): GRDB, split the channels in halves z1, z2, let each half attend to the other
    with one cross attention (F1 = X(z2 -> z1), F2 = X(z1 -> z2)), then a detail node."""

    def __init__(self, config: SMFNetConfig):
        super().__init__()
        self.grdb = GRDB(config.channels)
        self.cross_attention = CrossAttention(config.half, config.cross_heads)
        self.node = DetailNode(config)

    def forward(self, shallow: torch.Tensor) -> torch.Tensor:
        z1, z2 = self.grdb(shallow).chunk(2, dim=1)
        f1 = self.cross_attention(guide=z2, source=z1)
        f2 = self.cross_attention(guide=z1, source=z2)
        return self.node(f1, f2)


class ResidualGroup(nn.Module):
    """(TB -> TBase) x pairs, then conv3x3 C -> C/r, LReLU(0.2), 1x1, LReLU(0.2), conv3x3 back, plus
    the group's input (Eq. 9-10)."""

    def __init__(self, config: SMFNetConfig):
        super().__init__()
        c, reduced = config.channels, config.channels // config.base_reduction
        self.pairs = nn.ModuleList(
            nn.Sequential(TransformerBlock(c, config.heads, config.leff_hidden),
                          TransformerBase(c, config.heads, int(c * config.ffn_factor)))
            for _ in range(config.base_pairs))
        self.tail = nn.Sequential(
            nn.Conv2d(c, reduced, 3, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(reduced, reduced, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(reduced, c, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for pair in self.pairs:
            y = pair(y)
        return self.tail(y) + x


class BaseFeatureExtractor(nn.Module):
    """BFE: conv3x3, then the residual groups."""

    def __init__(self, config: SMFNetConfig):
        super().__init__()
        self.stem = nn.Conv2d(config.channels, config.channels, 3, padding=1)
        self.groups = nn.Sequential(*(ResidualGroup(config) for _ in range(config.base_groups)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.groups(self.stem(x))


class Encoder(nn.Module):
    """One grey image (B, 1, H, W) -> (Phi_S, Phi_D, Phi_B), each (B, C, H, W)."""

    def __init__(self, config: SMFNetConfig):
        super().__init__()
        c = config.channels
        self.stem = nn.Conv2d(1, c, 3, padding=1, bias=False)
        self.shallow = nn.Sequential(*(TransformerBlock(c, config.heads, config.leff_hidden)
                                       for _ in range(config.shallow_blocks)))
        self.detail = CrossAttentionInteraction(config)
        self.base = BaseFeatureExtractor(config)

    def forward(self, image: torch.Tensor) -> EncoderFeatures:
        shallow = self.shallow(self.stem(image))
        return EncoderFeatures(shallow, self.detail(shallow), self.base(shallow))
