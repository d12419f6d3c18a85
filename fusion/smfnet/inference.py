"""Around the network at test time, as the release's ``test.py`` does it: the network sees the infrared
image and the visible BT.601 full-range luminance Y, both in [0, 1]; its output replaces Y, the
visible Cb/Cr are kept (a grey visible image gives a grey result).

``minmax`` (the release: on) stretches each fused image to [0, 1] by its own minimum and maximum
before recolouring. It raises contrast but makes the output depend on each image's extremes, so one
hot pixel changes the whole image; off, the sigmoid output is used as it is. A constant output
(maximum = minimum) has no range to stretch and is kept as it is.
"""
from __future__ import annotations

import numpy as np
import torch

from fusion.color import fuse_luminance


def minmax_normalise(fused: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) -> each image mapped linearly onto [0, 1] (constant images unchanged)."""
    flat = fused.flatten(1)
    low = flat.min(dim=1).values.view(-1, 1, 1, 1)
    span = (flat.max(dim=1).values.view(-1, 1, 1, 1) - low)
    return torch.where(span > 0, (fused - low) / span.clamp_min(torch.finfo(fused.dtype).tiny), fused)


@torch.no_grad()
def fuse_images(model: torch.nn.Module, ir: np.ndarray, vi: np.ndarray, minmax: bool = True) -> np.ndarray:
    """One pair in the project's conventions (``ir`` (H, W), ``vi`` (H, W, 3) RGB or (H, W), float in
    [0, 1]) -> uint8 RGB (H, W, 3) fused with ``model`` (eval mode, on its own device)."""
    device = next(model.parameters()).device

    def fuse_y(ir_grey: np.ndarray, y: np.ndarray) -> np.ndarray:
        to_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None].to(device)
        fused = model(to_tensor(ir_grey), to_tensor(y))
        if minmax:
            fused = minmax_normalise(fused)
        return fused[0, 0].float().cpu().numpy()

    return fuse_luminance(ir, vi, fuse_y)
