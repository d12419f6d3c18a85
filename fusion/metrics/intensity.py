"""Metrics of the fused image alone: EN, SD, SF, AG, EI (the sources are not used)."""
from __future__ import annotations

import math

import cv2
import numpy as np

from fusion.metrics.conventions import Convention


def levels(x: np.ndarray) -> np.ndarray:
    """Grey levels as integer bin indices 0..255 (values are rounded to the nearest level)."""
    return np.round(x).astype(np.int64)


def entropy_bits(x: np.ndarray) -> float:
    """Shannon entropy (bits) of the 256-level histogram."""
    p = np.bincount(levels(x).ravel(), minlength=256) / x.size
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def en(f: np.ndarray, ir: np.ndarray, vi: np.ndarray, c: Convention) -> float:
    """Entropy (Roberts et al., 2008): ``-sum p_l log2 p_l`` over the 256 grey levels of F."""
    return entropy_bits(f)


def sd(f: np.ndarray, ir: np.ndarray, vi: np.ndarray, c: Convention) -> float:
    """Standard deviation (population) of F; VIFB calls it "Variance"."""
    return float(np.std(f))


def sf(f: np.ndarray, ir: np.ndarray, vi: np.ndarray, c: Convention) -> float:
    """Spatial frequency (Eskicioglu & Fisher, 1995) ``sqrt(RF^2 + CF^2)`` of squared horizontal and
    vertical differences, each averaged over its own count or (``per_pixel``) summed over H * W."""
    dx, dy = np.diff(f, axis=1), np.diff(f, axis=0)
    if c.sf_normalisation == "per_pixel":
        return float(math.sqrt(float((dx * dx).sum() + (dy * dy).sum()) / f.size))
    return float(np.sqrt(np.mean(dx ** 2) + np.mean(dy ** 2)))


def ag(f: np.ndarray, ir: np.ndarray, vi: np.ndarray, c: Convention) -> float:
    """Average gradient (Cui et al., 2015) ``sqrt((Gx^2 + Gy^2) / 2)`` with central differences inside
    and one-sided ones on the border (``np.gradient``, MATLAB ``gradient``), over H W or (H-1)(W-1)."""
    gy, gx = np.gradient(f)
    s = np.sqrt((gx ** 2 + gy ** 2) / 2)
    if c.ag_normalisation == "interior":
        return float(s.sum(dtype=np.float64) / ((f.shape[0] - 1) * (f.shape[1] - 1)))
    return float(np.mean(s))


_SOBEL = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], dtype=np.float64)


def ei(f: np.ndarray, ir: np.ndarray, vi: np.ndarray, c: Convention) -> float:
    """Edge intensity (Rajalingam & Priya, 2018; VIFB ``metricsEdge_intensity.m``): mean Sobel
    magnitude of F, image borders replicated (MATLAB ``imfilter(..., 'replicate')``)."""
    x = f.astype(np.float64)
    gx = cv2.filter2D(x, cv2.CV_64F, _SOBEL, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.filter2D(x, cv2.CV_64F, _SOBEL.T.copy(), borderType=cv2.BORDER_REPLICATE)
    return float(np.mean(np.sqrt(gx * gx + gy * gy)))
