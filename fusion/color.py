"""BT.601 full-range YCbCr, the colour convention of the IR/VI fusion literature.

Fusers work on luminance: the fused luminance replaces the visible Y and the visible
chroma (Cb, Cr) is kept. All arrays are float32 in [0, 1], channels last, RGB order.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

_RGB_TO_YCBCR = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]],
    dtype=np.float32,
)
_YCBCR_TO_RGB = np.linalg.inv(_RGB_TO_YCBCR.astype(np.float64)).astype(np.float32)


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB in [0, 1] -> (H, W, 3) YCbCr with Y in [0, 1] and Cb, Cr centred at 0.5."""
    ycc = rgb.astype(np.float32) @ _RGB_TO_YCBCR.T
    ycc[..., 1:] += 0.5
    return ycc


def ycbcr_to_rgb(ycc: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_ycbcr`, clipped to [0, 1]."""
    shifted = ycc.astype(np.float32).copy()
    shifted[..., 1:] -= 0.5
    return np.clip(shifted @ _YCBCR_TO_RGB.T, 0.0, 1.0)


def luminance(image: np.ndarray) -> np.ndarray:
    """Y channel of an RGB image, or the image itself when it is already grey (H, W)."""
    return image if image.ndim == 2 else rgb_to_ycbcr(image)[..., 0]


def recolor(fused_y: np.ndarray, vi: np.ndarray, keep_grey: bool = False) -> np.ndarray:
    """Fused luminance + visible chroma -> uint8 RGB (H, W, 3).

    A grey visible image (or ``keep_grey``) gives a grey result replicated to 3 channels.
    """
    return _recolor(fused_y, None if vi.ndim == 2 or keep_grey else rgb_to_ycbcr(vi))


def _recolor(fused_y: np.ndarray, vi_ycbcr: np.ndarray | None) -> np.ndarray:
    fused_y = np.clip(fused_y.astype(np.float32), 0.0, 1.0)
    if vi_ycbcr is None:
        return to_uint8(np.repeat(fused_y[..., None], 3, axis=2))
    vi_ycbcr[..., 0] = fused_y
    return to_uint8(ycbcr_to_rgb(vi_ycbcr))


def fuse_luminance(
    ir: np.ndarray, vi: np.ndarray, fuse_y: Callable[[np.ndarray, np.ndarray], np.ndarray]
) -> np.ndarray:
    """Apply a grey-level fusion rule ``fuse_y(ir, y) -> fused_y`` and recolour with the visible chroma."""
    if vi.ndim == 2:
        return _recolor(fuse_y(ir.astype(np.float32), vi.astype(np.float32)), None)
    ycc = rgb_to_ycbcr(vi)  # converted once: the rule reads its Y, the recolouring keeps its Cb/Cr
    return _recolor(fuse_y(ir.astype(np.float32), ycc[..., 0].copy()), ycc)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """[0, 1] float -> uint8 with rounding (not truncation)."""
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
