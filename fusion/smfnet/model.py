"""SMFNet's five modules and its two forward passes: stage I reconstructs each source from its own
features (the autoencoder that the decomposition is learnt in), stage II fuses."""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from fusion.smfnet.config import SMFNetConfig
from fusion.smfnet.decoder import Decoder
from fusion.smfnet.encoder import Encoder, EncoderFeatures
from fusion.smfnet.fusion_layers import BaseFusion, DetailFusion
from fusion.smfnet.graph import GraphReasoning

MODULES = ("encoder", "decoder", "graph", "base_fusion", "detail_fusion")


class Reconstruction(NamedTuple):
    """Stage I outputs: both reconstructions and the features the decomposition loss reads."""

    ir_hat: torch.Tensor
    vi_hat: torch.Tensor
    ir: EncoderFeatures
    vi: EncoderFeatures
    graph_ir: torch.Tensor
    graph_vi: torch.Tensor


class Fusion(NamedTuple):
    """Stage II outputs: the fused image and the features the decomposition loss reads."""

    fused: torch.Tensor
    ir: EncoderFeatures
    vi: EncoderFeatures
    graph_ir: torch.Tensor
    graph_vi: torch.Tensor


class SMFNet(nn.Module):
    """(I, V), each (B, 1, H, W) in [0, 1] -> F (B, 1, H, W) in (0, 1); any H, W >= 2 (no resampling)."""

    def __init__(self, config: SMFNetConfig = SMFNetConfig()):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.graph = GraphReasoning(config)
        self.base_fusion = BaseFusion(config)
        self.detail_fusion = DetailFusion(config)

    def module_groups(self) -> dict[str, nn.Module]:
        """The five modules by name (the unit of the two-stage schedule and of the authors' checkpoint)."""
        return {name: getattr(self, name) for name in MODULES}

    def _encode(self, ir: torch.Tensor, vi: torch.Tensor):
        features_vi = self.encoder(vi)
        features_ir = self.encoder(ir)
        graph_ir, graph_vi = self.graph(features_ir.shallow, features_vi.shallow)
        return features_ir, features_vi, graph_ir, graph_vi

    def reconstruct(self, ir: torch.Tensor, vi: torch.Tensor) -> Reconstruction:
        """Stage I: V^ = Dec(Phi_D^V + Phi_B^V + Phi_G^V), I^ likewise."""
        f_ir, f_vi, g_ir, g_vi = self._encode(ir, vi)
        vi_hat = self.decoder(f_vi.detail + f_vi.base + g_vi)
        ir_hat = self.decoder(f_ir.detail + f_ir.base + g_ir)
        return Reconstruction(ir_hat, vi_hat, f_ir, f_vi, g_ir, g_vi)

    def fuse(self, ir: torch.Tensor, vi: torch.Tensor) -> Fusion:
        """Stage II: F = Dec(F_detail(Phi_D^I + Phi_D^V) + F_base(Phi_B^I + Phi_B^V) + F_graph)."""
        f_ir, f_vi, g_ir, g_vi = self._encode(ir, vi)
        feature = (self.detail_fusion(f_ir.detail + f_vi.detail) + self.base_fusion(f_ir.base + f_vi.base)
                   + self.graph.merge(g_ir, g_vi))
        return Fusion(self.decoder(feature), f_ir, f_vi, g_ir, g_vi)

    def forward(self, ir: torch.Tensor, vi: torch.Tensor, stage: str | None = None):
        """The fused image; with ``stage`` ("reconstruction" or "fusion") that stage's outputs, so a
        trainer calls the (possibly DDP-wrapped) module itself."""
        if stage is None:
            return self.fuse(ir, vi).fused
        if stage == "reconstruction":
            return self.reconstruct(ir, vi)
        if stage == "fusion":
            return self.fuse(ir, vi)
        raise ValueError(f"SMFNet has the stages 'reconstruction' and 'fusion', not {stage!r}")
