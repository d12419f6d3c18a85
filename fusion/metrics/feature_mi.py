"""Feature mutual information: FMI_pixel, FMI_dct, FMI_w (Haghighat et al. 2011; Fast-FMI, 2014).

Follows Haghighat's MATLAB ``fmi.m`` (as Linfeng-Tang's kit ships it, ``analysis_fmi.m``): feature
maps of the three images, 3x3 sliding windows over the 'valid' part; in each window the source's
and F's features are min-max normalised (a flat window becomes ones), turned into marginal PDFs
over the 9 positions (MATLAB's column-major order), coupled into a joint PDF by Nelsen's method
(a mix of the independent PDF and Frechet's upper bound for a non-negative correlation of the
PDFs, the lower bound for a negative one), and scored as normalised MI ``2 I / (H_S + H_F)``
(bits); a window where the source's features equal F's scores 1. The value is the mean over the
windows of the mean of the IR and VI scores.

The windows are scored in one numba loop (compiled once, cached on disk, releasing the GIL so
threads scoring several images run it side by side). fmi.m fills the 9x9 bounding CDF, sums its
covariance and the joint entropy over all 81 cells; this computes the same sums in O(9 + 9):

* Frechet's bound B(F_i, S_j) is ``min(u, v)`` (upper) or ``max(u + v - 1, 0)`` (lower), so the
  rectangle mass of cell (i, j) is the length of the overlap of F's CDF step [F_{i-1}, F_i] with
  S's step [S_{j-1}, S_j] (upper) or [1 - S_j, 1 - S_{j-1}] (lower). One merge walk over the two
  sorted lists of step edges cuts [0, 1] into those overlaps: at most 17 cells have mass.
* In the same walk, ``sum_ij B - F_i S_j``: each term is ``min(u, v) (1 - max(u, v))`` (upper) or
  minus that of (u, 1 - v) (lower), one sign throughout (fmi.m's sum cancels B against F_i S_j),
  and summed in merged order each edge adds ``(1 - edge)`` times the other list's edges passed.
* Off the bound's support a cell's joint PDF is ``(1 - w) p_F,i p_S,j``, whose ``-p log2 p`` is
  a sum of logs already known; over all 81 cells that form sums to a closed expression in H_F,
  H_S and log2|1 - w|. The joint entropy is that sum with the support's cells (at most 17)
  swapped for their true ``-p log2 |p|``: only those, and the 27 PDF entries, call log2.

Both are the same sums as fmi.m's in another order: values agree with a direct float64 81-cell
loop to ~1e-13 (the tests check this on many windows). A window whose Nelsen weight is 0 (zero
correlation, or a PDF with all its mass on one position) has the independent joint PDF: its
mutual information is 0, where the 81-cell sum leaves rounding noise.
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
_X, _Y, _MASS, _CELL = range(4)
"""Rows of :func:`_window_nmi`'s scratch space: the two lists of step edges, the bound's support
cells' masses and their indices ``9 i + j``."""


@njit(cache=True, error_model="numpy", nogil=True, inline="always")
def _describe(window: np.ndarray, out: np.ndarray) -> tuple[float, float, float]:
    """Fills ``out`` (4, 9) with the window's normalised features (flat: ones), PDF, log2 PDF and
    CDF; returns the mean normalised feature, the PDF's entropy (bits) and its spread (standard
    deviation of the position 1..9)."""
    low = high = window[0]
    for k in range(1, _N):
        low, high = min(low, window[k]), max(high, window[k])
    total = 0.0
    for k in range(_N):
        out[_NORM, k] = 1.0 if high == low else (window[k] - low) / (high - low)
        total += out[_NORM, k]
    scale = 1.0 / total  # one division, then products
    entropy = cumulative = first = second = 0.0
    for k in range(_N):
        p = out[_NORM, k] * scale
        out[_PDF, k] = p
        cumulative += p
        out[_CDF, k] = cumulative
        out[_LOG, k] = math.log2(p) if p > 0 else 0.0
        entropy -= p * out[_LOG, k]
        first += p * (k + 1)
        second += p * (k + 1) * (k + 1)
    return total / _N, entropy, math.sqrt(max(second - first * first, 0.0))


@njit(cache=True, error_model="numpy", nogil=True, inline="always")
def _window_nmi(s: np.ndarray, s_stats: tuple[float, float, float],
                f: np.ndarray, f_stats: tuple[float, float, float], scratch: np.ndarray) -> float:
    """Fast-FMI's ``2 I / (H_S + H_F)`` of two described windows (:func:`_describe`); ``scratch``
    is (4, 20) space."""
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
    if corr == 0 or s_sd == 0 or f_sd == 0:
        return 0.0  # Nelsen's joint is the independent one: no mutual information
    upper = corr > 0  # Frechet's upper bound min(u, v), else the lower max(u + v - 1, 0)
    # F's steps [F_{i-1}, F_i] (x) and S's steps [S_{j-1}, S_j] (upper bound) or [1 - S_j, 1 - S_{j-1}]
    # (lower bound; y step k is S's j = 8 - k), as edges from 0 to 1, then a sentinel.
    scratch[_X, 0] = 0.0
    scratch[_Y, 0] = 0.0 if upper else 1.0 - s[_CDF, _N - 1]
    for k in range(_N):
        scratch[_X, k + 1] = f[_CDF, k]
        scratch[_Y, k + 1] = s[_CDF, k] if upper else (1.0 - s[_CDF, _N - 2 - k] if k < _N - 1 else 1.0)
    scratch[_X, _N + 1] = scratch[_Y, _N + 1] = 2.0
    # One merge walk over the 20 edges finds the bound's covariance sum and its support.
    # sum_ij B(F_i, S_j) - F_i S_j is +- the sum over pairs of an x and a y edge of min (1 - max):
    # terms of one sign (no cancellation, as summing B and F_i S_j apart would have), in merged
    # order each edge's (1 - edge) times the other list's edges passed so far.
    # The bound's rectangle mass of cell (i, j) is the overlap of x step i with y step k: the
    # merged edges cut [0, 1] into those overlaps, at most 17 of them not empty.
    # The walk is branch-free (its comparisons are data, not jumps): a mispredicted jump costs more.
    i = k = n_cells = 0
    passed_x = passed_y = bound_cov = previous = 0.0
    for _ in range(2 * _N + 2):
        take_x = scratch[_X, i] <= scratch[_Y, k]
        edge = min(scratch[_X, i], scratch[_Y, k])
        scratch[_MASS, n_cells] = edge - previous
        scratch[_CELL, n_cells] = (i - 1) * _N + (k - 1 if upper else _N - k)
        n_cells += (edge > previous) & (0 < i <= _N) & (0 < k <= _N)
        bound_cov += (1.0 - edge) * (passed_y if take_x else passed_x)
        passed_x += edge if take_x else 0.0
        passed_y += 0.0 if take_x else edge
        i += take_x
        k += not take_x
        previous = max(previous, edge)
    weight = corr / ((bound_cov if upper else -bound_cov) / (f_sd * s_sd))
    # Nelsen's joint PDF: weight * (the bound's rectangle masses) + (1 - weight) * p_F p_S. Summed
    # over all 81 cells, the independent form's -p log2 p, p = (1 - weight) p_F p_S, is
    # -(1 - weight) (log_rest sF sS - sS H_F - sF H_S) (sF, sS: the PDFs' sums, 1 up to rounding);
    # off the bound's support that is the cell's own term, so only the support's cells are redone.
    log_rest = math.log2(abs(1.0 - weight)) if weight != 1.0 else 0.0
    f_sum, s_sum = f[_CDF, _N - 1], s[_CDF, _N - 1]
    h_joint = -(1.0 - weight) * (log_rest * f_sum * s_sum - s_sum * h_f - f_sum * h_s)
    for c in range(n_cells):
        i, j = divmod(int(scratch[_CELL, c]), _N)
        independent = f[_PDF, i] * s[_PDF, j]
        p = weight * scratch[_MASS, c] + (1.0 - weight) * independent
        h_joint += (1.0 - weight) * independent * (log_rest + f[_LOG, i] + s[_LOG, j])
        if p != 0:
            h_joint -= p * math.log2(abs(p))
    mi = h_s + h_f - h_joint
    return 0.0 if mi == 0 else 2.0 * mi / (h_s + h_f)


@njit(cache=True, error_model="numpy", nogil=True)
def _fmi_mean(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """Mean over every 3x3 window of ``(FMI(A, F) + FMI(B, F)) / 2``. As ``fmi.m``, the B test
    ``B == F`` sees F already normalised unless A's window equalled F's."""
    rows, cols = f.shape[0] - FMI_WINDOW + 1, f.shape[1] - FMI_WINDOW + 1
    wa, wb, wf = np.empty(_N), np.empty(_N), np.empty(_N)
    da, db, df = np.empty((4, _N)), np.empty((4, _N)), np.empty((4, _N))
    scratch = np.empty((4, 2 * _N + 2))
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
            fmi_af = 1.0 if a_equal else _window_nmi(da, _describe(wa, da), df, f_stats, scratch)
            fmi_bf = 1.0 if b_equal else _window_nmi(db, _describe(wb, db), df, f_stats, scratch)
            total += (fmi_af + fmi_bf) / 2.0
    return total / (rows * cols)


def window_nmi(s: np.ndarray, f: np.ndarray) -> float:
    """Fast-FMI's normalised MI of one window's raw features ``s`` and ``f`` (9 values each,
    column by column)."""
    ds, df = np.empty((4, _N)), np.empty((4, _N))
    s_stats = _describe(np.asarray(s, np.float64).ravel(), ds)
    f_stats = _describe(np.asarray(f, np.float64).ravel(), df)
    return float(_window_nmi(ds, s_stats, df, f_stats, np.empty((4, 2 * _N + 2))))


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
