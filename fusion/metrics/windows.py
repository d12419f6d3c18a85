"""MATLAB ``fspecial('gaussian')`` windows, applied as two 1-D passes over the 'valid' part of an image.

VIF, SSIM, MS-SSIM and Qy filter every image several times with these windows; the separable
form costs 2n instead of n^2 multiplications per pixel and gives the 2-D window's values (to
rounding).
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np


@lru_cache(maxsize=None)
def gaussian_taps(size: int, sigma: float) -> np.ndarray:
    """1-D taps ``t`` with ``outer(t, t)`` = MATLAB ``fspecial('gaussian', size, sigma)``. fspecial zeroes
    2-D taps below eps * max, which would make the window inseparable: refused (no window here has one)."""
    r = (size - 1) / 2.0
    taps = np.exp(-np.arange(-r, r + 1) ** 2 / (2.0 * sigma * sigma))
    if taps[0] * taps[0] < np.finfo(np.float64).eps:
        raise ValueError(f"fspecial('gaussian', {size}, {sigma}) zeroes its corner taps: not separable")
    taps = taps / taps.sum()
    taps.flags.writeable = False
    return taps


def filter_valid(x: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """``x`` filtered by the symmetric window ``outer(taps, taps)`` (correlation = convolution), in
    float64, over the 'valid' part only."""
    r = taps.shape[0] // 2
    out = cv2.sepFilter2D(x, cv2.CV_64F, taps, taps, borderType=cv2.BORDER_CONSTANT)
    return out[r:x.shape[0] - r, r:x.shape[1] - r]
