"""Which image sizes the network accepts, and the reflect-pad / crop-back round trip.

The overlap patch embedding is a 4x4 convolution with stride 3, followed by two 2x patch mergings,
so a side ``s`` works when ``(s - 1)`` is divisible by 3 and ``(s - 1) / 3`` by 4 (``s = 12 k + 1``
for the default sizes): 49, 97, ..., 229 (the training crop), ... Any other size is reflect-padded
up to the next valid side and the output cropped back (:mod:`fusion.learned.inference`).
"""
from __future__ import annotations

import torch

from fusion.learned import inference as learned_inference

PATCH = 4
STRIDE = 3


def valid_size(s: int, merges: int = 2) -> bool:
    """True when a side of ``s`` pixels survives the patch embedding and ``merges`` 2x mergings exactly."""
    return s > PATCH and (s - 1) % STRIDE == 0 and ((s - 1) // STRIDE) % (2 ** merges) == 0


def next_valid_size(s: int, merges: int = 2) -> int:
    """Smallest valid side >= ``s``."""
    step = STRIDE * 2 ** merges
    return max(step + 1, 1 + step * -(-(s - 1) // step))


def pad_to_valid(x: torch.Tensor, merges: int = 2) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad (B, C, H, W) on the bottom/right to valid sizes; returns the padded tensor and (H, W)."""
    return learned_inference.pad_to_valid(x, lambda side: next_valid_size(side, merges))
