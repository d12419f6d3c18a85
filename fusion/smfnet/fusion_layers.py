"""The stage-II fusion layers: F_base (a transformer block on Phi_B^I + Phi_B^V) and F_detail (a GRDB
and DeepMIH affine invertible blocks run in reverse on Phi_D^I + Phi_D^V, Eq. 7-8)."""
from __future__ import annotations

import torch
from torch import nn

from fusion.smfnet.blocks import GRDB, InvertedResidualBlock, TransformerBlock
from fusion.smfnet.config import SMFNetConfig


class BaseFusion(nn.Module):
    """x += MDTA(LN x); x += LeFF(LN x) on the summed base features."""

    def __init__(self, config: SMFNetConfig):
        super().__init__()
        self.block = TransformerBlock(config.channels, config.heads, config.leff_hidden)

    def forward(self, summed_base: torch.Tensor) -> torch.Tensor:
        return self.block(summed_base)


class ReverseAffineBlock(nn.Module):
    """DeepMIH's affine coupling in its reverse direction (the release calls it with rev=True):
    1x1 mix, split (x1, x2); x2 = (x2 - eta(x1)) / e(rho(x1)); x1 = (x1 - phi(x2)) / e(psi(x2)),
    with e(s) = exp(2 clamp (sigmoid(s) - 1/2)). Names r, y, f, p follow rho, eta, phi, psi."""

    def __init__(self, config: SMFNetConfig):
        super().__init__()
        c, half, expand = config.channels, config.half, config.irb_expand
        self.clamp = config.inn_clamp
        self.mix = nn.Conv2d(c, c, 1)
        self.r = InvertedResidualBlock(half, half, expand)
        self.y = InvertedResidualBlock(half, half, expand)
        self.f = InvertedResidualBlock(half, half, expand)
        self.p = InvertedResidualBlock(half, half, expand)

    def scale(self, s: torch.Tensor) -> torch.Tensor:
        return torch.exp(self.clamp * 2 * (torch.sigmoid(s) - 0.5))

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x1, x2 = self.mix(torch.cat((x1, x2), dim=1)).chunk(2, dim=1)
        x2 = (x2 - self.y(x1)) / self.scale(self.r(x1))
        x1 = (x1 - self.f(x2)) / self.scale(self.p(x2))
        return x1, x2


class DetailFusion(nn.Module):
    """GRDB, split in halves, the reverse affine blocks, concatenate."""

    def __init__(self, config: SMFNetConfig):
        super().__init__()
        self.grdb = GRDB(config.channels)
        self.blocks = nn.ModuleList(ReverseAffineBlock(config) for _ in range(config.inn_blocks))

    def forward(self, summed_detail: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.grdb(summed_detail).chunk(2, dim=1)
        for block in self.blocks:
            x1, x2 = block(x1, x2)
        return torch.cat((x1, x2), dim=1)
