"""Structural similarity metrics: SSIM, MS-SSIM, Qy."""
from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity as skimage_ssim

from fusion.metrics.conventions import Convention
from fusion.metrics.vif import filter_valid, gaussian_window

_K1, _K2 = 0.01, 0.03


def ssim_maps(x: np.ndarray, y: np.ndarray, window: np.ndarray, data_range: float
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Wang et al.'s SSIM map, its contrast-structure factor, and the two local variances, over the
    'valid' part of a normalised ``window`` (population moments, as MATLAB ``ssim_index``)."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    mx, my = filter_valid(x, window), filter_valid(y, window)
    vx = filter_valid(x * x, window) - mx * mx
    vy = filter_valid(y * y, window) - my * my
    vxy = filter_valid(x * y, window) - mx * my
    c1, c2 = (_K1 * data_range) ** 2, (_K2 * data_range) ** 2
    cs = (2 * vxy + c2) / (vx + vy + c2)
    return (2 * mx * my + c1) / (mx * mx + my * my + c1) * cs, cs, vx, vy


def structural_similarity(x: np.ndarray, y: np.ndarray, c: Convention) -> float:
    """SSIM of two images: scikit-image's (7x7 uniform window, sample covariance, border of 3
    cropped; in the input dtype, as CDDFuse's evaluator) or Wang's 11x11 Gaussian over the valid part."""
    if c.ssim_window == "uniform7":
        return float(skimage_ssim(x, y, data_range=c.ssim_data_range))
    return float(ssim_maps(x, y, gaussian_window(11, 1.5), c.ssim_data_range)[0].mean())


def ssim(f: np.ndarray, ir: np.ndarray, vi: np.ndarray, c: Convention) -> float:
    """``SSIM(F, IR) + SSIM(F, VI)`` (Wang et al., 2004); 2 when F equals both sources."""
    return structural_similarity(f, ir, c) + structural_similarity(f, vi, c)


MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
MS_SSIM_MIN_SIZE = 176
"""Five scales of an 11-tap window: the fifth (side // 16) needs 11 pixels."""


def multiscale_ssim(x: np.ndarray, y: np.ndarray, data_range: float) -> float:
    """MS-SSIM (Wang, Simoncelli & Bovik, 2003): contrast-structure at scales 1-4 and full SSIM at
    scale 5 (2x2 mean decimation between scales), weighted geometric mean; negative factors are
    clipped to 0 (as pytorch-msssim) so the power stays real."""
    window = gaussian_window(11, 1.5)
    x, y = x.astype(np.float64), y.astype(np.float64)
    value = 1.0
    for scale, weight in enumerate(MS_SSIM_WEIGHTS):
        full, cs, _, _ = ssim_maps(x, y, window, data_range)
        factor = full.mean() if scale == len(MS_SSIM_WEIGHTS) - 1 else cs.mean()
        value *= max(float(factor), 0.0) ** weight
        h, w = (x.shape[0] // 2) * 2, (x.shape[1] // 2) * 2
        x = x[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
        y = y[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    return value


def ms_ssim(f: np.ndarray, ir: np.ndarray, vi: np.ndarray, c: Convention) -> float:
    """``MS-SSIM(F, IR) + MS-SSIM(F, VI)`` with L = 255; 2 when F equals both sources."""
    return multiscale_ssim(f, ir, c.ssim_data_range) + multiscale_ssim(f, vi, c.ssim_data_range)


def qy(f: np.ndarray, ir: np.ndarray, vi: np.ndarray, c: Convention) -> float:
    """Yang et al.'s (2008) SSIM-based metric, 7x7 Gaussian (sigma 1.5) windows: where
    SSIM(IR, VI) >= 0.75, ``l SSIM(IR, F) + (1 - l) SSIM(VI, F)`` with ``l = s_IR / (s_IR + s_VI)``
    (0.5 where both sources are flat), elsewhere ``max(SSIM(IR, F), SSIM(VI, F))``; mean over the
    valid windows."""
    window = gaussian_window(7, 1.5)
    s_iv, _, v_ir, v_vi = ssim_maps(ir, vi, window, c.ssim_data_range)
    s_if = ssim_maps(ir, f, window, c.ssim_data_range)[0]
    s_vf = ssim_maps(vi, f, window, c.ssim_data_range)[0]
    v_ir, v_vi = np.maximum(v_ir, 0.0), np.maximum(v_vi, 0.0)
    total = v_ir + v_vi
    weight = np.divide(v_ir, total, out=np.full_like(total, 0.5), where=total > 0)
    similar = s_iv >= 0.75
    q = np.where(similar, weight * s_if + (1 - weight) * s_vf, np.maximum(s_if, s_vf))
    return float(q.mean())
