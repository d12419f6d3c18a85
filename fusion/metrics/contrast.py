"""Human-visual-system metrics from contrast sensitivity filtering: Qcb (Chen-Blum), Qcv (Chen-Varshney)."""
from __future__ import annotations

import math

import numpy as np
from scipy.signal import fftconvolve

from fusion.metrics.conventions import Convention

QCV_BLOCK = 16


def _stretch(x: np.ndarray) -> np.ndarray:
    """VIFB's ``normalize1``: ``round(255 (x - min) / (max - min))``; NaN everywhere when flat and not 0."""
    x = x.astype(np.float64)
    low, high = float(x.min()), float(x.max())
    if low == high == 0:
        return x
    if low == high:
        return np.full_like(x, math.nan)
    return np.floor((x - low) / (high - low) * 255 + 0.5)


def _frequency_radius(shape: tuple[int, int], cycles_x: float, cycles_y: float) -> np.ndarray:
    """MATLAB ``freqspace(shape, 'meshgrid')`` scaled per axis, as radius, in ``ifftshift`` order
    (so it multiplies ``fft2`` directly)."""
    fy = (np.arange(shape[0]) - shape[0] // 2) * (2.0 / shape[0]) * cycles_y
    fx = (np.arange(shape[1]) - shape[1] // 2) * (2.0 / shape[1]) * cycles_x
    return np.fft.ifftshift(np.sqrt(fx[None, :] ** 2 + fy[:, None] ** 2))


def _filtered(x: np.ndarray, response: np.ndarray) -> np.ndarray:
    return np.real(np.fft.ifft2(np.fft.fft2(x) * response))


def _gaussian31(sigma: float) -> np.ndarray:
    r = np.arange(-15, 16, dtype=np.float64)
    return np.exp(-(r[None, :] ** 2 + r[:, None] ** 2) / (2 * sigma * sigma)) / (2 * math.pi * sigma * sigma)


def _masked_contrast(x: np.ndarray) -> np.ndarray:
    """``|G2 * x / G4 * x - 1|`` (31x31 Gaussians of sigma 2 and 4, zero padding), then the
    masking response ``C^3 / (C^2 + 1e-4)``."""
    contrast = np.abs(fftconvolve(x, _gaussian31(2), mode="same") / fftconvolve(x, _gaussian31(4), mode="same") - 1)
    return contrast ** 3 / (contrast ** 2 + 1e-4)


def qcb(f: np.ndarray, ir: np.ndarray, vi: np.ndarray, c: Convention) -> float:
    """Chen & Blum (2009) metric as VIFB ``metricsQcb.m``: images stretched to [0, 255], filtered by
    the contrast sensitivity function ``exp(-(r/15.387)^2) - 0.7622 exp(-(r/1.3456)^2)`` (r in
    cycles of a 30-pixel degree), masked contrasts, per-pixel preservation ratios weighted by the
    sources' squared contrasts, averaged. NaN when an image is flat."""
    radius = _frequency_radius(f.shape, f.shape[1] / 30, f.shape[0] / 30)
    csf = np.exp(-(radius / 15.3870) ** 2) - 0.7622 * np.exp(-(radius / 1.3456) ** 2)
    c1, c2, cf = (_masked_contrast(_filtered(_stretch(x), csf)) for x in (vi, ir, f))
    with np.errstate(divide="ignore", invalid="ignore"):
        q1 = np.where(c1 < cf, c1 / cf, cf / c1)
        q2 = np.where(c2 < cf, c2 / cf, cf / c2)
        w1 = c1 * c1 / (c1 * c1 + c2 * c2)
        w2 = c2 * c2 / (c1 * c1 + c2 * c2)
    return float(np.mean(w1 * q1 + w2 * q2))


def _block_sums(x: np.ndarray) -> np.ndarray:
    """Sums over 16x16 blocks, the last ones zero-padded (MATLAB ``blkproc``)."""
    h, w = -(-x.shape[0] // QCV_BLOCK) * QCV_BLOCK, -(-x.shape[1] // QCV_BLOCK) * QCV_BLOCK
    padded = np.zeros((h, w))
    padded[:x.shape[0], :x.shape[1]] = x
    return padded.reshape(h // QCV_BLOCK, QCV_BLOCK, w // QCV_BLOCK, QCV_BLOCK).sum(axis=(1, 3))


def _sobel_strength(x: np.ndarray) -> np.ndarray:
    sx = fftconvolve(x, np.array([[1.0, 0, -1], [2, 0, -2], [1, 0, -1]]), mode="same")
    sy = fftconvolve(x, np.array([[1.0, 2, 1], [0, 0, 0], [-1, -2, -1]]), mode="same")
    return np.sqrt(sx * sx + sy * sy)


def qcv(f: np.ndarray, ir: np.ndarray, vi: np.ndarray, c: Convention) -> float:
    """Chen & Varshney (2007) metric as VIFB ``metricsQcv.m``: per 16x16 block, the mean square of
    the CSF-filtered difference between a source and F (``2.6 (0.0192 + 0.144 r) exp(-(0.144 r)^1.1)``,
    r in cycles of an 8th of the image), weighted by the block's sum of the source's Sobel strength
    to the power 5. Lower is better; 0 when F equals both sources, NaN when an image is flat."""
    vi_s, ir_s, f_s = _stretch(vi), _stretch(ir), _stretch(f)
    radius = _frequency_radius(f.shape, f.shape[1] / 8, f.shape[0] / 8)
    csf = 2.6 * (0.0192 + 0.144 * radius) * np.exp(-(0.144 * radius) ** 1.1)
    weights = [_block_sums(_sobel_strength(x) ** 5) for x in (vi_s, ir_s)]
    errors = [_block_sums(_filtered(x - f_s, csf) ** 2) / QCV_BLOCK ** 2 for x in (vi_s, ir_s)]
    total = weights[0].sum() + weights[1].sum()
    if not total > 0:
        return math.nan
    return float((weights[0] * errors[0] + weights[1] * errors[1]).sum() / total)
