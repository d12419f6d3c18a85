"""Replacements for the CMSA block used in the paper's ablation (Table V).

Every block maps channels-last (I, V) -> residual updates (dI, dV) and is stacked K times in a
:class:`~fusion.s4fusion.cmsa.FusionLayer`, exactly where CMSA blocks sit, so only the interaction
operator changes. Widths are chosen so the parameter count per block is of the order of a CMSA
block's (about 10 C^2 for C channels; bench/bench_model.py prints the exact totals). "add" has no
block at all (R = I + V).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvFusionBlock(nn.Module):
    """CNN: h = GELU(Conv3x3([I; V]) 2C -> C/2), dI = Conv1x1_I(h), dV = Conv1x1_V(h)  (~10 C^2)."""

    def __init__(self, dim: int):
        super().__init__()
        hidden = dim // 2
        self.mix = nn.Conv2d(2 * dim, hidden, 3, padding=1)
        self.out_ir = nn.Conv2d(hidden, dim, 1)
        self.out_vi = nn.Conv2d(hidden, dim, 1)

    def forward(self, ir: torch.Tensor, vi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.gelu(self.mix(torch.cat((ir, vi), dim=-1).permute(0, 3, 1, 2)))
        return self.out_ir(h).permute(0, 2, 3, 1), self.out_vi(h).permute(0, 2, 3, 1)


class CrossAttentionBlock(nn.Module):
    """Each modality queries the other (q from itself, k/v from the other), pre-LN, multi-head (~8 C^2).

    ``over="channels"``: transposed attention over the channel axis (a (C/h x C/h) map per head,
    L2-normalised q/k with a learned temperature), linear in the number of tokens.
    ``over="tokens"``: ordinary spatial attention over the H*W positions.
    """

    def __init__(self, dim: int, head_dim: int = 16, over: str = "channels"):
        super().__init__()
        if over not in ("channels", "tokens"):
            raise ValueError(f"over must be 'channels' or 'tokens', got {over!r}")
        self.heads, self.over = max(1, dim // head_dim), over
        self.norm_ir, self.norm_vi = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.q_ir, self.q_vi = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.kv_ir, self.kv_vi = nn.Linear(dim, 2 * dim), nn.Linear(dim, 2 * dim)
        self.out_ir, self.out_vi = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.temperature = nn.Parameter(torch.ones(self.heads, 1, 1)) if over == "channels" else None

    def forward(self, ir: torch.Tensor, vi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = ir.shape
        a, b = self.norm_ir(ir).flatten(1, 2), self.norm_vi(vi).flatten(1, 2)  # (B, L, C)
        d_ir = self.out_ir(self.attend(self.q_ir(a), *self.kv_vi(b).chunk(2, dim=-1)))
        d_vi = self.out_vi(self.attend(self.q_vi(b), *self.kv_ir(a).chunk(2, dim=-1)))
        return d_ir.view(shape), d_vi.view(shape)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """(B, L, C) x 3 -> (B, L, C)."""
        q, k, v = (t.unflatten(-1, (self.heads, -1)).transpose(1, 2) for t in (q, k, v))  # (B, h, L, c)
        if self.over == "tokens":
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            q, k = F.normalize(q, dim=2), F.normalize(k, dim=2)
            attn = (q.transpose(-2, -1) @ k * self.temperature).softmax(dim=-1)  # (B, h, c, c)
            out = (attn @ v.transpose(-2, -1)).transpose(-2, -1)
        return out.transpose(1, 2).flatten(2)


class ConcatAttentionBlock(nn.Module):
    """Vanilla self-attention over the concatenated token sequence [I tokens ; V tokens] plus an MLP
    (pre-LN transformer block, MLP ratio 1.5: ~10 C^2); the two halves are the updates."""

    def __init__(self, dim: int, head_dim: int = 16, mlp_ratio: float = 1.5):
        super().__init__()
        self.heads = max(1, dim // head_dim)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        hidden = int(mlp_ratio * dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, ir: torch.Tensor, vi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = ir.shape
        x = torch.cat((ir.flatten(1, 2), vi.flatten(1, 2)), dim=1)  # (B, 2L, C)
        q, k, v = (t.unflatten(-1, (self.heads, -1)).transpose(1, 2) for t in self.qkv(self.norm1(x)).chunk(3, dim=-1))
        attn = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)
        update = self.proj(attn)
        update = update + self.mlp(self.norm2(x + update))
        d_ir, d_vi = update.chunk(2, dim=1)
        return d_ir.reshape(shape), d_vi.reshape(shape)
