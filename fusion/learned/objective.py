"""The usual :class:`~fusion.learned.architecture.Objective`: run the network once, score its output."""
from __future__ import annotations

import torch
from torch import nn


class FusedOutputObjective(nn.Module):
    """``loss(net(ir, vi), ir, vi)`` for architectures with one stage whose loss needs only the fused image.

    ``loss`` returns a dict with ``loss.terms`` (scalars, "total" first) and ``loss.diagnostics``."""

    def __init__(self, loss: nn.Module):
        super().__init__()
        self.loss = loss
        self.terms: tuple[str, ...] = tuple(loss.terms)
        self.diagnostics: tuple[str, ...] = tuple(loss.diagnostics)

    def forward(self, net: nn.Module, ir: torch.Tensor, vi: torch.Tensor, stage: str) -> dict[str, torch.Tensor]:
        return self.loss(net(ir, vi), ir, vi)
