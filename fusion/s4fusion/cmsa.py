"""CMSA: Cross-Modal Spatial Awareness (paper Sec. III-C, Alg. 1), in the released code's layout.

One CMSA block, per modality m in {IR, VI} (channels-last (B, H, W, C)):
1. (optional input LayerNorm: the paper has it, the released code not), ``in_proj`` -> (P_m, z_m);
   P_m through a depthwise 3x3 conv + SiLU shared by both modalities.
2. Patch Mark: M = mark_proj([P_IR ; P_VI]); the scanned inputs are P_m + M (same mark for both
   modalities at one position). As in the released code, Delta/B/C are projected from the unmarked P_m.
3. Interleaving: per scan direction, [I_1, V_1, I_2, V_2, ...] (length 2L).
4. Cross SS2D: one scan per direction with modality-specific x -> (Delta, B, C) projections
   (``x_proj_weight`` infrared, ``y_proj_weight`` visible), shared Delta up-projection, A and D;
   the hidden state runs through both modalities' tokens.
5. Recovering: even / odd positions back to IR / VI, undo each direction, sum the 4 directions.
6. out_norm, gate SiLU(z_m), out_proj; the layer adds this to its input (residual).
A CMSA layer is K such blocks; its output is R = I^(K) + V^(K).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fusion.s4fusion.ssm import DIRECTIONS, DirectionalSSM, dt_rank_for, flatten_direction, unflatten_direction


def interleave(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B, C, L) x 2 -> (B, C, 2L) as [a_1, b_1, a_2, b_2, ...]."""
    return torch.stack((a, b), dim=-1).flatten(-2)


class CMSABlock(DirectionalSSM):
    """One cross-modal block; returns the residual updates (dI, dV)."""

    def __init__(self, d_model: int, d_state: int = 18, expand: float = 1.5, d_conv: int = 3,
                 patch_mark: bool = True, input_norm: bool = False):
        d_inner = int(expand * d_model)
        super().__init__(d_inner, d_state, dt_rank_for(d_model), proj_names=("x_proj_weight", "y_proj_weight"))
        self.norm = nn.LayerNorm(d_model) if input_norm else None
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
        self.conv2d = nn.Conv2d(d_inner, d_inner, d_conv, padding=(d_conv - 1) // 2, groups=d_inner)
        bound = (2 * d_inner) ** -0.5
        self.mark_proj = nn.Parameter(torch.empty(d_inner, 2 * d_inner).uniform_(-bound, bound)) if patch_mark else None
        self.out_norm = nn.LayerNorm(d_inner)
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)

    def forward(self, ir: torch.Tensor, vi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, height, width, _ = ir.shape
        if self.norm is not None:
            ir, vi = self.norm(ir), self.norm(vi)
        p_ir, z_ir = self.in_proj(ir).chunk(2, dim=-1)
        p_vi, z_vi = self.in_proj(vi).chunk(2, dim=-1)
        p_ir = F.silu(self.conv2d(p_ir.permute(0, 3, 1, 2).contiguous()))
        p_vi = F.silu(self.conv2d(p_vi.permute(0, 3, 1, 2).contiguous()))
        t_ir, t_vi = self.cross_scan_2d(p_ir, p_vi)
        return (self.finish(t_ir, z_ir, height, width), self.finish(t_vi, z_vi, height, width))

    def finish(self, t: torch.Tensor, z: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """(B, D, L) scan output -> LN, SiLU(z) gate, out_proj, channels-last (B, H, W, C)."""
        return self.out_proj(self.out_norm(t.transpose(1, 2).unflatten(1, (height, width))) * F.silu(z))

    def cross_scan_2d(self, p_ir: torch.Tensor, p_vi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Patch mark, interleave, scan and recover in each direction; (B, D, H, W) x 2 -> (B, D, L) x 2."""
        height, width = p_ir.shape[-2:]
        if self.mark_proj is not None:
            mark = torch.einsum("bchw,dc->bdhw", torch.cat((p_ir, p_vi), dim=1), self.mark_proj)
        t_ir = t_vi = None
        for k in range(DIRECTIONS):
            s_ir, s_vi = flatten_direction(p_ir, k), flatten_direction(p_vi, k)
            proj_ir = self.project(s_ir, k, "x_proj_weight")
            proj_vi = self.project(s_vi, k, "y_proj_weight")
            if self.mark_proj is not None:
                s_mark = flatten_direction(mark, k)
                s_ir, s_vi = s_ir + s_mark, s_vi + s_mark
            out = self.scan(interleave(s_ir, s_vi), *(interleave(a, b) for a, b in zip(proj_ir, proj_vi)), k)
            out_ir = unflatten_direction(out[..., 0::2], k, height, width)
            out_vi = unflatten_direction(out[..., 1::2], k, height, width)
            t_ir = out_ir if t_ir is None else t_ir + out_ir
            t_vi = out_vi if t_vi is None else t_vi + out_vi
        return t_ir, t_vi


class FusionLayer(nn.Module):
    """K fusion blocks with residual updates on both streams; returns R = I^(K) + V^(K).

    Serves CMSA and every ablation block: each block maps (I, V) -> (dI, dV).
    """

    def __init__(self, blocks: list[nn.Module]):
        super().__init__()
        self.layers = nn.ModuleList(blocks)

    def forward(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        for block in self.layers:
            d_ir, d_vi = block(ir, vi)
            ir, vi = ir + d_ir, vi + d_vi
        return ir + vi
