"""Pixel-difference and correlation metrics of F against the sources: MSE, RMSE, PSNR, CC, SCD."""
from __future__ import annotations

import math

import numpy as np

from fusion.metrics.conventions import Convention


def _vifb_error(source: np.ndarray, f: np.ndarray) -> float:
    """VIFB's per-source "mse": ``sqrt(sum (S - F)^2) / (H W)`` (its PSNR and RMSE build on it)."""
    d = source.astype(np.float64) - f
    return math.sqrt(float((d * d).sum())) / f.size


def mse(f: np.ndarray, ir: np.ndarray, vi: np.ndarray, c: Convention) -> float:
    """Mean squared error ``(mean((IR - F)^2) + mean((VI - F)^2)) / 2`` in grey levels^2."""
    return float((np.mean((ir - f) ** 2) + np.mean((vi - f) ** 2)) / 2)


def rmse(f: np.ndarray, ir: np.ndarray, vi: np.ndarray, c: Convention) -> float:
    """Root mean squared error ``sqrt(MSE)``; VIFB reports the mean of its per-source "mse"."""
    if c.psnr == "vifb":
        return (_vifb_error(vi, f) + _vifb_error(ir, f)) / 2.0
    return math.sqrt(mse(f, ir, vi, c))


def psnr(f: np.ndarray, ir: np.ndarray, vi: np.ndarray, c: Convention) -> float:
    """Peak signal-to-noise ratio ``10 log10(P^2 / MSE)`` (P = max F or 255), or VIFB's
    ``20 log10(255 / sqrt(m))``; +inf when F equals both sources."""
    if c.psnr == "vifb":
        error = (_vifb_error(vi, f) + _vifb_error(ir, f)) / 2.0
        return 20 * math.log10(255 / math.sqrt(error)) if error > 0 else math.inf
    error = mse(f, ir, vi, c)
    peak = float(np.max(f)) if c.psnr == "fused_peak" else 255.0
    if error == 0:
        return math.inf
    return float(10 * np.log10(c.dtype(peak) ** 2 / c.dtype(error)))


def correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's r ``sum(dx dy) / sqrt(sum dx^2 sum dy^2)``; NaN when either input is flat."""
    dx, dy = x - np.mean(x), y - np.mean(y)
    denominator = np.sqrt(np.sum(dx * dx) * np.sum(dy * dy))
    return float(np.sum(dx * dy) / denominator) if denominator > 0 else math.nan


def cc(f: np.ndarray, ir: np.ndarray, vi: np.ndarray, c: Convention) -> float:
    """Correlation coefficient ``(r(IR, F) + r(VI, F)) / 2``; NaN when F or a source is flat."""
    return (correlation(ir, f) + correlation(vi, f)) / 2


def scd(f: np.ndarray, ir: np.ndarray, vi: np.ndarray, c: Convention) -> float:
    """Sum of the correlations of differences (Aslantas & Bendes, 2015) ``r(F - VI, IR) +
    r(F - IR, VI)``; NaN when F equals a source (a difference is flat)."""
    return correlation(ir, f - vi) + correlation(vi, f - ir)
