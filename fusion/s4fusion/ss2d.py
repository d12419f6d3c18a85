"""SS2D and the VSS block (VMamba) used by both encoders and the decoder.

SS2D(x) = out_proj(LN(sum_k unscan_k(scan_k(SiLU(dwconv(x_branch))))) * SiLU(z)), where
(x_branch, z) = in_proj(x) and k runs over the four 2-D scan orders, scanned together as one grouped
selective scan (one kernel launch per block, as in the released code).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fusion.s4fusion.ssm import DirectionalSSM, dt_rank_for


class SS2D(DirectionalSSM):
    """2-D selective scan over four directions; channels-last (B, H, W, C) in and out."""

    def __init__(self, d_model: int, d_state: int = 12, expand: float = 1.5, d_conv: int = 3):
        d_inner = int(expand * d_model)
        super().__init__(d_inner, d_state, dt_rank_for(d_model))
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
        self.conv2d = nn.Conv2d(d_inner, d_inner, d_conv, padding=(d_conv - 1) // 2, groups=d_inner)
        self.out_norm = nn.LayerNorm(d_inner)
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch, z = self.in_proj(x).chunk(2, dim=-1)
        branch = F.silu(self.conv2d(branch.permute(0, 3, 1, 2).contiguous()))
        y = self.scan_2d(branch, self.project_all(branch))
        return self.out_proj(self.out_norm(y.permute(0, 2, 3, 1)) * F.silu(z))


class VSSBlock(nn.Module):
    """x + DropPath(SS2D(LN(x))). The attribute names follow the released weights."""

    def __init__(self, dim: int, d_state: int = 12, expand: float = 1.5, drop_path: float = 0.0):
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim)
        self.self_attention = SS2D(dim, d_state=d_state, expand=expand)
        from torchvision.ops import StochasticDepth  # here: its import takes seconds; reading a config needs none

        self.drop_path = StochasticDepth(drop_path, mode="row")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.self_attention(self.ln_1(x)))
