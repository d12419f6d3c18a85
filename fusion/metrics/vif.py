"""Visual information fidelity: VIF = VIFp(IR, F) + VIFp(VI, F)."""
from __future__ import annotations

import cv2
import numpy as np

from fusion.metrics.conventions import Convention

SIGMA_N2 = 2.0
EPS = 1e-10
VIF_MIN_SIZE = 41
"""The smallest side for which all four scales keep at least one valid window (17 -> 41)."""


def gaussian_window(size: int, sigma: float) -> np.ndarray:
    """MATLAB ``fspecial('gaussian', size, sigma)``: taps below eps * max zeroed, sum 1."""
    r = (size - 1) / 2.0
    y, x = np.mgrid[-r:r + 1, -r:r + 1]
    h = np.exp(-(x * x + y * y) / (2.0 * sigma * sigma))
    h[h < np.finfo(h.dtype).eps * h.max()] = 0
    return h / h.sum()


def filter_valid(x: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Filtering over the 'valid' part only (the windows are symmetric: correlation = convolution)."""
    r = window.shape[0] // 2
    out = cv2.filter2D(x, cv2.CV_64F, window, borderType=cv2.BORDER_CONSTANT)
    return out[r:x.shape[0] - r, r:x.shape[1] - r]


def vif_p(ref: np.ndarray, dist: np.ndarray) -> float:
    """Pixel-domain VIF (Sheikh & Bovik, 2006) as in CDDFuse's ``compare_viff`` and the MATLAB
    ``vifp_mscale``: 4 scales (Gaussian windows of 17, 9, 5, 3 taps, sigma = taps / 5, decimation
    by 2 before scales 2-4), ``sum log10(1 + g^2 s1 / (sv^2 + 2)) / sum log10(1 + s1 / 2)``; 1.0 when
    no window of ``ref`` has any variance (0 / 0, the toolkit's NaN -> 1 rule)."""
    ref, dist = ref.astype(np.float64), dist.astype(np.float64)
    num = den = 0.0
    for scale in range(1, 5):
        window = gaussian_window(2 ** (5 - scale) + 1, (2 ** (5 - scale) + 1) / 5.0)
        if scale > 1:
            ref = filter_valid(ref, window)[::2, ::2]
            dist = filter_valid(dist, window)[::2, ::2]
        mu1, mu2 = filter_valid(ref, window), filter_valid(dist, window)
        s1 = np.maximum(filter_valid(ref * ref, window) - mu1 * mu1, 0.0)
        s2 = np.maximum(filter_valid(dist * dist, window) - mu2 * mu2, 0.0)
        s12 = filter_valid(ref * dist, window) - mu1 * mu2
        g = s12 / (s1 + EPS)
        sv = s2 - g * s12
        flat_ref = s1 < EPS
        g[flat_ref], sv[flat_ref], s1[flat_ref] = 0.0, s2[flat_ref], 0.0
        flat_dist = s2 < EPS
        g[flat_dist], sv[flat_dist] = 0.0, 0.0
        negative = g < 0
        sv[negative], g[negative] = s2[negative], 0.0
        sv = np.maximum(sv, EPS)
        num += float(np.log10(1.0 + g * g * s1 / (sv + SIGMA_N2)).sum())
        den += float(np.log10(1.0 + s1 / SIGMA_N2).sum())
    return num / den if den > 0 else 1.0


def vif(f: np.ndarray, ir: np.ndarray, vi: np.ndarray, c: Convention) -> float:
    """``VIFp(IR, F) + VIFp(VI, F)``, the "VIF"/"VIFF" column of recent papers."""
    return vif_p(ir, f) + vif_p(vi, f)
