"""CMSA: Cross-Modal Spatial Awareness (paper Sec. III-C, Alg. 1), in the released code's layout.

One CMSA block, per modality m in {IR, VI} (channels-last (B, H, W, C)):
1. (optional input LayerNorm: the paper has it, the released code not), ``in_proj`` -> (P_m, z_m);
   P_m through a depthwise 3x3 conv + SiLU shared by both modalities.
2. Patch Mark: M = mark_proj([P_IR ; P_VI]); the scanned inputs are P_m + M (same mark for both
   modalities at one position). As in the released code, Delta/B/C are projected from the unmarked P_m.
3. Interleaving: per scan direction, [I_1, V_1, I_2, V_2, ...] (length 2L).
4. Cross SS2D: the four directions in one grouped scan, with modality-specific x -> (Delta, B, C) projections
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

from fusion.s4fusion.ssm import DirectionalSSM, dt_rank_for


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
        if self.norm is not None:
            ir, vi = self.norm(ir), self.norm(vi)
        p_ir, z_ir = self.in_proj(ir).chunk(2, dim=-1)
        p_vi, z_vi = self.in_proj(vi).chunk(2, dim=-1)
        p = torch.cat((p_ir, p_vi)).permute(0, 3, 1, 2).contiguous()  # both modalities as one batch
        p_ir, p_vi = F.silu(self.conv2d(p)).chunk(2)
        t = self.cross_scan_2d(p_ir, p_vi)  # (B, D, H, W, 2)
        out = self.out_proj(self.out_norm(t.permute(0, 4, 2, 3, 1)) * F.silu(torch.stack((z_ir, z_vi), dim=1)))
        return out[:, 0], out[:, 1]

    def cross_scan_2d(self, p_ir: torch.Tensor, p_vi: torch.Tensor) -> torch.Tensor:
        """Patch mark, interleave, scan and recover; (B, D, H, W) x 2 -> (B, D, H, W, 2) (last dim IR, VI).

        Interleaving is a trailing pair dimension: flattening (H, W, 2) in any scan order gives
        [I_1, V_1, I_2, V_2, ...], and even / odd positions come back as index 0 / 1.
        """
        # the pairs are stacked outermost (dim 2), then moved last: the CPU scan reads them in place
        dbl = torch.stack((self.project_all(p_ir, "x_proj_weight"), self.project_all(p_vi, "y_proj_weight")), dim=2)
        dbl = dbl.movedim(2, -1)
        if self.mark_proj is not None:
            w_ir, w_vi = self.mark_proj.chunk(2, dim=1)
            mark = torch.einsum("bchw,dc->bdhw", p_ir, w_ir) + torch.einsum("bchw,dc->bdhw", p_vi, w_vi)
            p_ir, p_vi = p_ir + mark, p_vi + mark
        return self.scan_2d(torch.stack((p_ir, p_vi), dim=2).movedim(2, -1), dbl)


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
