"""S4Fusion: two VSS encoders, a fusion layer (CMSA or an ablation) per scale, a VSS decoder, a fold head.

forward(ir, vi_y) takes (B, 1, H, W) tensors in [0, 1] at valid sizes (see :mod:`geometry`) and
returns the fused luminance (B, 1, H, W), unclipped. Attribute names follow the authors' released
weights (minus their ``vmunet.`` prefix and the head's names, see :mod:`checkpoint`).
"""
from __future__ import annotations

import torch
from torch import nn

from fusion.s4fusion.ablations import (
    ConcatAttentionBlock,
    ConvFusionBlock,
    CrossAttentionBlock,
)
from fusion.s4fusion.cmsa import CMSABlock, FusionLayer
from fusion.s4fusion.config import S4FusionConfig
from fusion.s4fusion.geometry import next_valid_size, valid_size
from fusion.s4fusion.layers import FoldHead, OverlapPatchEmbed
from fusion.s4fusion.stages import DecoderStage, EncoderStage

__all__ = ["S4Fusion", "S4FusionConfig", "valid_size", "next_valid_size"]


def fusion_block(cfg: S4FusionConfig, dim: int) -> nn.Module:
    """One block of the configured fusion kind at ``dim`` channels."""
    kind = cfg.fusion_block
    if kind in ("cmsa", "cmsa_no_mark"):
        return CMSABlock(dim, cfg.d_state_fusion, cfg.expand, patch_mark=kind == "cmsa", input_norm=cfg.cmsa_input_norm)
    if kind == "cnn":
        return ConvFusionBlock(dim)
    if kind in ("channel_attn", "spatial_attn"):
        return CrossAttentionBlock(dim, cfg.attn_head_dim, over="channels" if kind == "channel_attn" else "tokens")
    if kind == "vanilla_attn":
        return ConcatAttentionBlock(dim, cfg.attn_head_dim)
    raise ValueError(f"fusion block {kind!r} has no blocks")


class S4Fusion(nn.Module):
    """The S4Fusion network; ``S4Fusion()`` is the released topology with the paper's sizes."""

    def __init__(self, config: S4FusionConfig | None = None):
        super().__init__()
        cfg = self.config = config or S4FusionConfig()
        scales = len(cfg.dims)
        dpr = torch.linspace(0, cfg.drop_path_rate, sum(cfg.depths)).tolist()
        dpr_dec = torch.linspace(0, cfg.drop_path_rate, sum(cfg.depths_decoder)).tolist()[::-1]
        starts = [sum(cfg.depths[:i]) for i in range(scales)]
        starts_dec = [sum(cfg.depths_decoder[:i]) for i in range(scales)]

        def encoder() -> nn.ModuleList:
            return nn.ModuleList(
                EncoderStage(dim, depth, cfg.d_state, cfg.expand, i < scales - 1, dpr[starts[i]:])
                for i, (dim, depth) in enumerate(zip(cfg.dims, cfg.depths))
            )

        self.patch_embed_x = OverlapPatchEmbed(cfg.in_chans, cfg.dims[0])
        self.patch_embed_y = OverlapPatchEmbed(cfg.in_chans, cfg.dims[0])
        self.layers_x, self.layers_y = encoder(), encoder()
        blocks = 0 if cfg.fusion_block == "add" else cfg.fusion_depth
        self.fusion_layers = nn.ModuleList(
            FusionLayer([fusion_block(cfg, dim) for _ in range(blocks)]) for dim in cfg.dims
        )
        dims_dec = cfg.dims[::-1]
        self.layers_up = nn.ModuleList(
            DecoderStage(dim, depth, cfg.d_state, cfg.expand, i > 0, dpr_dec[starts_dec[i]:])
            for i, (dim, depth) in enumerate(zip(dims_dec, cfg.depths_decoder))
        )
        self.head = FoldHead(cfg.dims[0], cfg.out_chans)
        self.apply(_init_weights)

    def valid_size(self, s: int) -> bool:
        return valid_size(s, self.config.merges)

    def next_valid_size(self, s: int) -> int:
        return next_valid_size(s, self.config.merges)

    def forward(self, ir: torch.Tensor, vi_y: torch.Tensor) -> torch.Tensor:
        self._check_inputs(ir, vi_y)
        size = ir.shape[-2:]
        x, y = self.patch_embed_x(ir), self.patch_embed_y(vi_y)
        per_scale = []
        for layer_x, layer_y in zip(self.layers_x, self.layers_y):
            per_scale.append((x, y))
            x, y = layer_x(x), layer_y(y)
        feature = x + y
        if self.config.topology == "paper":
            fused = [fusion(*xy) for fusion, xy in zip(self.fusion_layers, per_scale)]
            for i, stage in enumerate(self.layers_up):
                feature = stage.refine(stage.up(feature) + fused[-1 - i])
        else:
            # The released decoder never reads the finest-scale fusion output: it is not computed.
            fused = [None] + [fusion(*xy) for fusion, xy in zip(self.fusion_layers[1:], per_scale[1:])]
            for i, stage in enumerate(self.layers_up):
                feature = stage.refine(stage.up(feature if i == 0 else feature + fused[-i]))
        return self.head(feature, size)

    def _check_inputs(self, ir: torch.Tensor, vi_y: torch.Tensor) -> None:
        if ir.dim() != 4 or ir.shape != vi_y.shape or ir.shape[1] != self.config.in_chans:
            raise ValueError(
                f"S4Fusion expects ir and vi_y of the same shape (B, {self.config.in_chans}, H, W); "
                f"got {tuple(ir.shape)} and {tuple(vi_y.shape)}"
            )
        height, width = ir.shape[-2:]
        if not (self.valid_size(height) and self.valid_size(width)):
            raise ValueError(
                f"S4Fusion cannot take a {height}x{width} input: each side must be a valid size, e.g. "
                f"{self.next_valid_size(height)}x{self.next_valid_size(width)}; pad with "
                "fusion.s4fusion.geometry.pad_to_valid (the inference API does this for you)"
            )


def _init_weights(m: nn.Module) -> None:
    """The released initialisation: truncated-normal linear weights, zero biases, unit LayerNorms."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
