"""Feature mutual information: FMI_pixel, FMI_dct, FMI_w (Haghighat et al. 2011; Fast-FMI, 2014).

Follows Haghighat's MATLAB ``fmi.m`` (as Linfeng-Tang's kit ships it, ``analysis_fmi.m``): feature
maps of the three images, 3x3 sliding windows over the 'valid' part; in each window the source's
and F's features are min-max normalised (a flat window becomes ones), turned into marginal PDFs
over the 9 positions (MATLAB's column-major order), coupled into a joint PDF by Nelsen's method
(a mix of the independent PDF and Frechet's upper bound for a non-negative correlation of the
PDFs, the lower bound for a negative one), and scored as normalised MI ``2 I / (H_S + H_F)``
(bits); a window where the source's features equal F's scores 1. The value is the mean over the
windows of the mean of the IR and VI scores.

The windows are scored in one numba loop (compiled once, cached on disk): per window, only the
27 PDF entries and the joint PDF's cells on the bound's support call log2.
"""
from __future__ import annotations

import math

import numpy as np
import pywt
from numba import njit
from scipy.fft import dctn

from fusion.metrics.conventions import Convention

FMI_WINDOW = 3
_N = FMI_WINDOW * FMI_WINDOW
_NORM, _PDF, _LOG, _CDF = range(4)
"""Rows of a window's description: min-max normalised features, PDF, log2 of the PDF, CDF."""


@njit(cache=True, error_model="numpy")
def _describe(window: np.ndarray, out: np.ndarray) -> tuple[float, float, float]:
    """Fills ``out`` (4, 9) with the window's normalised features (flat: ones), PDF, log2 PDF and
    CDF; returns the mean normalised feature, the PDF's entropy (bits) and its spread (standard
    deviation of the position 1..9)."""
    low, high = window.min(), window.max()
    for k in range(_N):
        out[_NORM, k] = 1.0 if high == low else (window[k] - low) / (high - low)
    total = out[_NORM].sum()
    entropy = cumulative = first = second = 0.0
    for k in range(_N):
        p = out[_NORM, k] / total
        out[_PDF, k] = p
        cumulative += p
        out[_CDF, k] = cumulative
        out[_LOG, k] = math.log2(p) if p > 0 else 0.0
        entropy -= p * out[_LOG, k]
        first += p * (k + 1)
        second += p * (k + 1) * (k + 1)
    return total / _N, entropy, math.sqrt(max(second - first * first, 0.0))


@njit(cache=True, error_model="numpy")
def _window_nmi(s: np.ndarray, s_stats: tuple[float, float, float],
                f: np.ndarray, f_stats: tuple[float, float, float], bound: np.ndarray) -> float:
    """Fast-FMI's ``2 I / (H_S + H_F)`` of two described windows (:func:`_describe`); ``bound`` is
    (10, 10) scratch space."""
    s_mean, h_s, s_sd = s_stats
    f_mean, h_f, f_sd = f_stats
    # Pearson's r of the PDFs equals that of the normalised features; computed on those, a flat
    # window's deviations are exactly 0 (r = 0), where fmi.m's PDF rounding noise can give +-1.
    cov = s_dd = f_dd = 0.0
    for k in range(_N):
        ds, df = s[_NORM, k] - s_mean, f[_NORM, k] - f_mean
        cov += ds * df
        s_dd += ds * ds
        f_dd += df * df
    corr = 0.0 if cov == 0 else cov / math.sqrt(s_dd * f_dd)
    upper = corr >= 0  # Frechet's upper bound min(u, v), else the lower max(u + v - 1, 0)
    bound[0, :] = 0.0  # the bounding CDF after a zero row and column
    bound[:, 0] = 0.0
    bound_cov = 0.0
    for i in range(_N):
        for j in range(_N):
            u, v = f[_CDF, i], s[_CDF, j]
            b = min(u, v) if upper else max(u + v - 1.0, 0.0)
            bound[i + 1, j + 1] = b
            bound_cov += b - u * v
    weight = 0.0 if corr == 0 or s_sd == 0 or f_sd == 0 else corr / (bound_cov / (f_sd * s_sd))
    # Nelsen's joint PDF: weight * (the bound's rectangle masses) + (1 - weight) * (independent PDF).
    # Off the bound's support (mass exactly 0) the joint is (1 - weight) p_F p_S, whose log2 is a sum
    # of logs known already: only the bound's support (at most 17 cells) calls log2.
    log_rest = math.log2(abs(1.0 - weight)) if weight != 1.0 else 0.0
    h_joint = 0.0
    for i in range(_N):
        for j in range(_N):
            mass = bound[i + 1, j + 1] - bound[i, j + 1] - bound[i + 1, j] + bound[i, j]
            p = weight * mass + (1.0 - weight) * (f[_PDF, i] * s[_PDF, j])
            if p == 0:
                continue
            if mass == 0:
                h_joint -= p * (log_rest + f[_LOG, i] + s[_LOG, j])
            else:
                h_joint -= p * math.log2(abs(p))
    mi = h_s + h_f - h_joint
    return 0.0 if mi == 0 else 2.0 * mi / (h_s + h_f)


@njit(cache=True, error_model="numpy")
def _fmi_mean(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """Mean over every 3x3 window of ``(FMI(A, F) + FMI(B, F)) / 2``. As ``fmi.m``, the B test
    ``B == F`` sees F already normalised unless A's window equalled F's."""
    rows, cols = f.shape[0] - FMI_WINDOW + 1, f.shape[1] - FMI_WINDOW + 1
    wa, wb, wf = np.empty(_N), np.empty(_N), np.empty(_N)
    da, db, df = np.empty((4, _N)), np.empty((4, _N)), np.empty((4, _N))
    bound = np.empty((_N + 1, _N + 1))
    total = 0.0
    for r in range(rows):
        for c in range(cols):
            for k in range(_N):  # column by column, as MATLAB's x(:)
                y, x = r + k % FMI_WINDOW, c + k // FMI_WINDOW
                wa[k], wb[k], wf[k] = a[y, x], b[y, x], f[y, x]
            f_stats = _describe(wf, df)
            a_equal = True
            for k in range(_N):
                a_equal = a_equal and wa[k] == wf[k]
            b_equal = True
            for k in range(_N):
                b_equal = b_equal and wb[k] == (wf[k] if a_equal else df[_NORM, k])
            fmi_af = 1.0 if a_equal else _window_nmi(da, _describe(wa, da), df, f_stats, bound)
            fmi_bf = 1.0 if b_equal else _window_nmi(db, _describe(wb, db), df, f_stats, bound)
            total += (fmi_af + fmi_bf) / 2.0
    return total / (rows * cols)


def window_nmi(s: np.ndarray, f: np.ndarray) -> float:
    """Fast-FMI's normalised MI of one window's raw features ``s`` and ``f`` (9 values each,
    column by column)."""
    ds, df = np.empty((4, _N)), np.empty((4, _N))
    s_stats = _describe(np.asarray(s, np.float64).ravel(), ds)
    f_stats = _describe(np.asarray(f, np.float64).ravel(), df)
    return float(_window_nmi(ds, s_stats, df, f_stats, np.empty((_N + 1, _N + 1))))


def feature_mutual_information(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """Mean Fast-FMI over every 3x3 window of three equal-size feature maps."""
    return float(_fmi_mean(*(np.ascontiguousarray(x, dtype=np.float64) for x in (a, b, f))))


def _rerange(x: np.ndarray) -> np.ndarray:
    """``fmi.m``'s ``rerange``: the whole map scaled to [0, 1]; a flat map becomes ones."""
    low, high = float(x.min()), float(x.max())
    return np.ones_like(x) if high == low else (x - low) / (high - low)


def _wavelet(x: np.ndarray) -> np.ndarray:
    """``rerange([cA, cH; cV, cD])`` of one level of the discrete Meyer DWT, symmetric extension."""
    c_a, (c_h, c_v, c_d) = pywt.dwt2(x.astype(np.float64), "dmey", mode="symmetric")
    return _rerange(np.block([[c_a, c_h], [c_v, c_d]]))


def fmi_pixel(f: np.ndarray, ir: np.ndarray, vi: np.ndarray, c: Convention) -> float:
    """FMI on the raw pixels (``fmi.m`` feature 'none')."""
    return feature_mutual_information(ir, vi, f)


def fmi_dct(f: np.ndarray, ir: np.ndarray, vi: np.ndarray, c: Convention) -> float:
    """FMI on the whole image's orthonormal 2-D DCT-II (MATLAB ``dct2``; feature 'dct')."""
    return feature_mutual_information(*(dctn(x.astype(np.float64), norm="ortho") for x in (ir, vi, f)))


def fmi_w(f: np.ndarray, ir: np.ndarray, vi: np.ndarray, c: Convention) -> float:
    """FMI on one level of the discrete Meyer wavelet transform, its four sub-bands tiled and scaled
    to [0, 1] (feature 'wavelet'). PyWavelets' 'dmey' has 62 taps where MATLAB's has 102, so this
    is not MATLAB's number (the sub-band sizes differ too)."""
    return feature_mutual_information(*(_wavelet(x) for x in (ir, vi, f)))
