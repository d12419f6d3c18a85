"""Edge-preservation metrics from Sobel gradients: Qabf and Nabf (Xydeas & Petrovic)."""
from __future__ import annotations

import math

import cv2
import numpy as np
from scipy.signal import convolve2d

from fusion.metrics.conventions import Convention

_SOBEL_Y = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]])
_SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]])


def _edges(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sobel strength ``sqrt(sx^2 + sy^2)`` and orientation ``arctan(sy / sx)`` (pi/2 where sx = 0),
    from MATLAB ``conv2(..., 'same')`` (zero padding), in the input's dtype."""
    sx = convolve2d(x, _SOBEL_X.astype(x.dtype), mode="same")
    sy = convolve2d(x, _SOBEL_Y.astype(x.dtype), mode="same")
    strength = np.sqrt(sx * sx + sy * sy)
    zero = sx == 0
    angle = np.where(zero, x.dtype.type(math.pi / 2), np.arctan(sy / np.where(zero, 1, sx)))
    return strength, angle.astype(x.dtype)


def _preservation(g_s: np.ndarray, a_s: np.ndarray, g_f: np.ndarray, a_f: np.ndarray,
                  c: Convention) -> np.ndarray:
    """Per-pixel ``Q^{SF} = Q_g Q_a`` with ``G = min/max`` of the strengths (0 where both are 0; where
    they are equal and non-zero: 1, or the toolkits' ``g_F``) and ``A = 1 - |a_S - a_F| / (pi/2)``."""
    high, low = np.maximum(g_s, g_f), np.minimum(g_s, g_f)
    ratio = np.divide(low, high, out=np.zeros_like(high), where=high > 0)
    if c.qabf_equal_strength == "strength":
        ratio = np.where(g_s == g_f, g_f, ratio)
    orientation = 1 - np.abs(a_s - a_f) / ratio.dtype.type(math.pi / 2)
    q_g = 0.9994 / (1 + np.exp(-15 * (ratio - ratio.dtype.type(0.5))))
    q_a = 0.9879 / (1 + np.exp(-22 * (orientation - orientation.dtype.type(0.8))))
    return q_g * q_a


def qabf(f: np.ndarray, ir: np.ndarray, vi: np.ndarray, c: Convention) -> float:
    """Gradient-based fusion quality Q^{AB/F} (Xydeas & Petrovic, 2000), constants Tg 0.9994, kg -15,
    Dg 0.5, Ta 0.9879, ka -22, Da 0.8, weights ``w = g`` (L = 1):
    ``sum(Q^{AF} w_A + Q^{BF} w_B) / sum(w_A + w_B)``; NaN when both sources are flat."""
    scale = f.dtype.type(c.qabf_scale)
    g_f, a_f = _edges(f * scale)
    g_a, a_a = _edges(ir * scale)
    g_b, a_b = _edges(vi * scale)
    weights = np.sum(g_a + g_b)
    if weights == 0:
        return math.nan
    q = _preservation(g_a, a_a, g_f, a_f, c) * g_a + _preservation(g_b, a_b, g_f, a_f, c) * g_b
    return float(np.sum(q) / weights)


_NABF_TD, _NABF_L = 2.0, 1.5


def _petrovic_edges(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sobel / 8 responses with the border mirrored (the MATLAB ``per_extn_im_fn``): strength and
    orientation ``arctan(gv / gh)`` (0 where both are 0)."""
    x = x.astype(np.float64)
    gh = cv2.filter2D(x, cv2.CV_64F, _SOBEL_Y.astype(np.float64) / 8, borderType=cv2.BORDER_REFLECT_101)
    gv = cv2.filter2D(x, cv2.CV_64F, _SOBEL_X.astype(np.float64) / 8, borderType=cv2.BORDER_REFLECT_101)
    flat = (gv == 0) & (gh == 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        angle = np.where(flat, 0.0, np.arctan(gv / gh))  # +-pi/2 where gh = 0
    return np.sqrt(gh * gh + gv * gv), angle


def _petrovic_q(g_s: np.ndarray, a_s: np.ndarray, g_f: np.ndarray, a_f: np.ndarray) -> np.ndarray:
    high, low = np.maximum(g_s, g_f), np.minimum(g_s, g_f)
    ratio = np.divide(low, high, out=np.zeros_like(high), where=(g_s > 0) & (g_f > 0))
    orientation = np.abs(np.abs(a_s - a_f) - np.pi / 2) * 2 / np.pi
    q_g = 0.9999 / (1 + np.exp(-19 * (ratio - 0.5)))
    q_a = 0.9995 / (1 + np.exp(-22 * (orientation - 0.5)))
    return np.sqrt(q_g * q_a)


def nabf(f: np.ndarray, ir: np.ndarray, vi: np.ndarray, c: Convention) -> float:
    """Fusion artefacts N^{AB/F} as modified by Shreyamsha Kumar (2013; Petrovic's objective fusion
    toolbox): where F's edge is stronger than both sources', ``sum((1 - Q^{AF}) w_A + (1 - Q^{BF}) w_B)
    / sum(w_A + w_B)`` with ``w = g^1.5`` for g >= 2, else 0; NaN when no source edge reaches 2.
    Lower is better; 0 when F adds no edge."""
    g_f, a_f = _petrovic_edges(f)
    g_a, a_a = _petrovic_edges(ir)
    g_b, a_b = _petrovic_edges(vi)
    w_a = np.where(g_a >= _NABF_TD, g_a ** _NABF_L, 0.0)
    w_b = np.where(g_b >= _NABF_TD, g_b ** _NABF_L, 0.0)
    total = float((w_a + w_b).sum())
    if total == 0:
        return math.nan
    artefact = (g_f > g_a) & (g_f > g_b)
    loss = (1 - _petrovic_q(g_a, a_a, g_f, a_f)) * w_a + (1 - _petrovic_q(g_b, a_b, g_f, a_f)) * w_b
    return float(loss[artefact].sum() / total)
