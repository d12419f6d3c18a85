"""Feature mutual information: FMI_pixel, FMI_dct, FMI_w (Haghighat et al. 2011; Fast-FMI, 2014).

Follows Haghighat's MATLAB ``fmi.m`` (as Linfeng-Tang's kit ships it, ``analysis_fmi.m``): feature
maps of the three images, 3x3 sliding windows over the 'valid' part; in each window the source's
and F's features are min-max normalised (a flat window becomes ones), turned into marginal PDFs
over the 9 positions (MATLAB's column-major order), coupled into a joint PDF by Nelsen's method
(a mix of the independent PDF and Frechet's upper bound for a non-negative correlation of the
PDFs, the lower bound for a negative one), and scored as normalised MI ``2 I / (H_S + H_F)``
(bits); a window where the source's features equal F's scores 1. The value is the mean over the
windows of the mean of the IR and VI scores.

The windows are scored in blocks of 512, laid out as arrays over the windows: every per-window
quantity (a feature, a PDF entry, a correlation, ...) is one row of a flat work buffer, and each
numba loop runs over the windows of a few rows, so LLVM turns it into SIMD code (8 windows an
instruction). Three kernels per block (describe the windows, couple each pair, score), with
NumPy's vectorised log2 (~0.6 ns a value, where libm's scalar log2 is ~3 ns) between them on
rows of log2 inputs. The kernels are compiled once, cached on disk, and release the GIL, so
threads scoring several images run them side by side; one call uses one core. fmi.m fills the
9x9 bounding CDF, sums its covariance and the joint entropy over all 81 cells; this computes the
same sums with logs of at most 17 cells:

* Frechet's bound B(F_i, S_j) is ``min(u, v)`` (upper) or ``max(u + v - 1, 0)`` (lower), so the
  rectangle mass of cell (i, j) is the length of the overlap of F's CDF step [F_{i-1}, F_i] with
  S's step [S_{j-1}, S_j] (upper) or [1 - S_j, 1 - S_{j-1}] (lower: S's steps mirrored, taken in
  reverse order as y steps k = 10 - j). The overlaps are ordered along [0, 1], so the cells
  (i, k) with mass have increasing i + k: one pass over the 81 cells, branch-free, puts each
  window's support into 17 slots i + k, at most one cell (mass and ``p_F,i p_S,j``) in each.
* In the same pass, ``sum_ij B - F_i S_j`` as the sum over the pairs of an F edge u and a y edge
  v of ``min(u, v) (1 - max(u, v))``: terms of one sign (fmi.m's sum cancels B against F_i S_j).
* Off the bound's support a cell's joint PDF is ``(1 - w) p_F,i p_S,j``, whose ``-p log2 p`` is
  a sum of logs already known; over all 81 cells that form sums to a closed expression in H_F,
  H_S and log2|1 - w|. The joint entropy is that sum with the support's slots swapped for their
  true ``-p log2 |p|``: per window and pair, log2 of 17 slots' p and ``p_F p_S`` and of |1 - w|,
  plus the 27 PDF entries.

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
_SLOTS = 2 * _N - 1
"""The bound's support has at most one cell (i, k) on each anti-diagonal i + k: 17 slots."""

_BLOCK = 512
"""Windows per block; every per-window quantity is a row of ``_BLOCK`` values in one work buffer."""
_IMAGES, _PAIRS = 3, 2
"""Images A, B (the sources) and F, in this order; pairs (A, F) and (B, F)."""
_VALUE, _NORM, _PDF, _CDF = 0, _N, 2 * _N, 3 * _N
_MEAN, _DEVIATION, _SPREAD, _ENTROPY, _LOW, _HIGH, _SCALE, _FIRST, _SECOND = range(4 * _N, 4 * _N + 9)
_PER_IMAGE = 4 * _N + 9
"""Rows of image m, from ``m * _PER_IMAGE``: the window's raw features (column by column, as
MATLAB's x(:)), min-max normalised (flat: ones), PDF, CDF, the mean normalised feature and the sum
of its squared deviations, the PDF's spread (standard deviation of the position 1..9) and entropy
(bits); scratch."""
_LOG_PDF = _IMAGES * _PER_IMAGE
"""Image m's log2 PDF: rows ``_LOG_PDF + 9 m + k`` (0 for a zero entry; first log2's input)."""
_X_EDGE = _LOG_PDF + _IMAGES * _N
"""The 10 edges of F's steps: 0, then F's CDF."""
_PAIR = _X_EDGE + _N + 1
_JOINT, _IND, _Y_EDGE, _Y_PDF = 0, _SLOTS, 2 * _SLOTS, 2 * _SLOTS + _N + 1
_CORR, _BOUND_COV, _WEIGHT, _SCORED, _IND_SUM, _H_JOINT, _NMI = range(2 * _SLOTS + 2 * _N + 1, 2 * _SLOTS + 2 * _N + 8)
_PER_PAIR = 2 * _SLOTS + 2 * _N + 8
"""Rows of pair s, from ``_PAIR + s * _PER_PAIR``: per support slot the bound's mass (then Nelsen's
joint PDF) and ``p_F p_S`` (0 off the support); the 10 edges of S's steps in the bound's order and
S's PDF in that order; the normalised features' correlation, the bound's covariance sum, Nelsen's
weight, 1 where the weight applies (else the MI is 0), the support's sum of ``p_F p_S``, the joint
entropy, the normalised MI."""
_LOG_JOINT = _PAIR + _PAIRS * _PER_PAIR
_LOG_P, _LOG_IND, _LOG_REST = 0, _SLOTS, 2 * _SLOTS
_PER_LOG = 2 * _SLOTS + 1
"""Rows of pair s, from ``_LOG_JOINT + s * _PER_LOG``: log2 |p| of each slot's joint PDF, log2 of
its ``p_F p_S``, log2 |1 - weight| (0 for a zero; first log2's inputs)."""
_A_EQUAL, _B_EQUAL = _LOG_JOINT + _PAIRS * _PER_LOG, _LOG_JOINT + _PAIRS * _PER_LOG + 1
_ROWS = _B_EQUAL + 1


@njit(cache=True, nogil=True, inline="always")
def _row(buf: np.ndarray, row: int) -> np.ndarray:
    """One quantity of the block's windows: a slice of the flat work buffer. Each loop below runs
    over the windows of a few such rows, which LLVM vectorises (SIMD across windows); indexing a
    2-D buffer instead makes those loops ~4x slower."""
    return buf[row * _BLOCK:(row + 1) * _BLOCK]


@njit(cache=True, nogil=True, inline="always")
def _smaller(a: float, b: float) -> float:
    """``min(a, b)`` as a compare and a select: numba's builtin is a call that LLVM does not vectorise."""
    return a if a < b else b


@njit(cache=True, nogil=True, inline="always")
def _larger(a: float, b: float) -> float:
    """``max(a, b)``, vectorisable (see :func:`_smaller`)."""
    return a if a > b else b


@njit(cache=True, error_model="numpy", nogil=True)
def _describe(images: tuple[np.ndarray, np.ndarray, np.ndarray], first: int, count: int, buf: np.ndarray) -> None:
    """Copies the features of windows ``first .. first + count`` (row-major over the windows) of
    the three ``images`` (A, B, F) into the block; fills each image's normalised features, PDF, CDF,
    mean, deviations and spread, and the PDF as the input of its log2 (1 for a zero entry)."""
    cols = images[0].shape[1] - FMI_WINDOW + 1
    done = 0
    while done < count:
        r, c = divmod(first + done, cols)
        run = min(cols - c, count - done)
        for m in range(_IMAGES):
            for k in range(_N):
                value, source = _row(buf, m * _PER_IMAGE + _VALUE + k), images[m][r + k % FMI_WINDOW]
                for j in range(run):
                    value[done + j] = source[c + k // FMI_WINDOW + j]
        done += run
    for m in range(_IMAGES):
        at = m * _PER_IMAGE
        low, high, scale = _row(buf, at + _LOW), _row(buf, at + _HIGH), _row(buf, at + _SCALE)
        mean, deviation = _row(buf, at + _MEAN), _row(buf, at + _DEVIATION)
        first_moment, second_moment = _row(buf, at + _FIRST), _row(buf, at + _SECOND)
        value = _row(buf, at + _VALUE)
        for w in range(count):
            low[w] = high[w] = value[w]
            mean[w] = deviation[w] = first_moment[w] = second_moment[w] = 0.0
        for k in range(1, _N):
            value = _row(buf, at + _VALUE + k)
            for w in range(count):
                low[w] = _smaller(low[w], value[w])
                high[w] = _larger(high[w], value[w])
        for k in range(_N):
            value, norm = _row(buf, at + _VALUE + k), _row(buf, at + _NORM + k)
            for w in range(count):
                span = high[w] - low[w]
                norm[w] = 1.0 if span == 0 else (value[w] - low[w]) / span
                mean[w] += norm[w]
        for w in range(count):
            scale[w] = 1.0 / mean[w]  # one division, then products
            mean[w] /= _N
        for k in range(_N):
            norm, pdf, log_input = _row(buf, at + _NORM + k), _row(buf, at + _PDF + k), _row(buf, _LOG_PDF + m * _N + k)
            for w in range(count):
                pdf[w] = norm[w] * scale[w]
                log_input[w] = pdf[w] if pdf[w] > 0 else 1.0
            for w in range(count):
                deviation[w] += (norm[w] - mean[w]) * (norm[w] - mean[w])
            for w in range(count):
                first_moment[w] += pdf[w] * (k + 1)
                second_moment[w] += pdf[w] * (k + 1) * (k + 1)
        cdf, pdf = _row(buf, at + _CDF), _row(buf, at + _PDF)
        for w in range(count):
            cdf[w] = pdf[w]
        for k in range(1, _N):
            cdf, before, pdf = _row(buf, at + _CDF + k), _row(buf, at + _CDF + k - 1), _row(buf, at + _PDF + k)
            for w in range(count):
                cdf[w] = before[w] + pdf[w]
        spread = _row(buf, at + _SPREAD)
        for w in range(count):
            spread[w] = math.sqrt(_larger(second_moment[w] - first_moment[w] * first_moment[w], 0.0))


@njit(cache=True, error_model="numpy", nogil=True)
def _couple(buf: np.ndarray, count: int) -> None:
    """Per pair (S, F): Nelsen's weight, the joint PDF on the bound's support slots and the inputs
    of the log2 of those and of ``p_F p_S`` there (module docstring)."""
    f = 2 * _PER_IMAGE
    edge = _row(buf, _X_EDGE)
    for w in range(count):
        edge[w] = 0.0
    for i in range(_N):
        edge, cdf = _row(buf, _X_EDGE + i + 1), _row(buf, f + _CDF + i)
        for w in range(count):
            edge[w] = cdf[w]
    for pair in range(_PAIRS):
        s, at = pair * _PER_IMAGE, _PAIR + pair * _PER_PAIR
        # Pearson's r of the PDFs equals that of the normalised features; computed on those, a
        # flat window's deviations are exactly 0 (r = 0), where fmi.m's PDF rounding noise can give +-1.
        corr, s_mean, f_mean = _row(buf, at + _CORR), _row(buf, s + _MEAN), _row(buf, f + _MEAN)
        for w in range(count):
            corr[w] = 0.0
        for k in range(_N):
            s_norm, f_norm = _row(buf, s + _NORM + k), _row(buf, f + _NORM + k)
            for w in range(count):
                corr[w] += (s_norm[w] - s_mean[w]) * (f_norm[w] - f_mean[w])
        s_dd, f_dd = _row(buf, s + _DEVIATION), _row(buf, f + _DEVIATION)
        for w in range(count):
            corr[w] = 0.0 if corr[w] == 0 else corr[w] / math.sqrt(s_dd[w] * f_dd[w])
        # Frechet's upper bound min(u, v) where r > 0, else the lower max(u + v - 1, 0). x step i is
        # F's [F_{i-1}, F_i]; y step k is S's step k (upper) or S's step 10 - k mirrored,
        # [1 - S_{10-k}, 1 - S_{9-k}] (lower); y edge k is the end of y step k.
        edge, s_last = _row(buf, at + _Y_EDGE), _row(buf, s + _CDF + _N - 1)
        for w in range(count):
            edge[w] = 0.0 if corr[w] > 0 else 1.0 - s_last[w]
        for k in range(_N):
            mirror = _N - 1 - k
            edge, pdf = _row(buf, at + _Y_EDGE + k + 1), _row(buf, at + _Y_PDF + k)
            upper_cdf, upper_pdf = _row(buf, s + _CDF + k), _row(buf, s + _PDF + k)
            lower_cdf, lower_pdf = _row(buf, s + _CDF + _larger(mirror - 1, 0)), _row(buf, s + _PDF + mirror)
            if mirror > 0:
                for w in range(count):
                    edge[w] = upper_cdf[w] if corr[w] > 0 else 1.0 - lower_cdf[w]
            else:
                for w in range(count):
                    edge[w] = upper_cdf[w] if corr[w] > 0 else 1.0
            for w in range(count):  # a copy, then the lower bound's windows (as one select, LLVM keeps it scalar)
                pdf[w] = upper_pdf[w]
            for w in range(count):
                if corr[w] <= 0:
                    pdf[w] = lower_pdf[w]
        # One pass over the 81 cells (i, k) finds the bound's covariance sum and its support.
        # sum_ij B(F_i, S_j) - F_i S_j is +- the sum over the pairs of an x and a y edge of
        # min (1 - max): terms of one sign, no cancellation. Cell (i, k) pairs the ends of x step i
        # and y step k; the pairs with y edge 0 come first. The cell's bound mass is the overlap of
        # the two steps; the overlaps are ordered along [0, 1], so the cells with mass have
        # increasing i + k: at most one per slot i + k.
        bound_cov, y = _row(buf, at + _BOUND_COV), _row(buf, at + _Y_EDGE)
        for w in range(count):
            bound_cov[w] = 0.0
        for i in range(1, _N + 1):
            x = _row(buf, _X_EDGE + i)
            for w in range(count):
                bound_cov[w] += _smaller(x[w], y[w]) * (1.0 - _larger(x[w], y[w]))
        for slot in range(_SLOTS):
            mass, ind = _row(buf, at + _JOINT + slot), _row(buf, at + _IND + slot)
            for w in range(count):
                mass[w] = ind[w] = 0.0
        for i in range(_N):
            x_low, x_high, p_f = _row(buf, _X_EDGE + i), _row(buf, _X_EDGE + i + 1), _row(buf, f + _PDF + i)
            for k in range(_N):
                y_low, y_high = _row(buf, at + _Y_EDGE + k), _row(buf, at + _Y_EDGE + k + 1)
                p_s = _row(buf, at + _Y_PDF + k)
                mass, ind = _row(buf, at + _JOINT + i + k), _row(buf, at + _IND + i + k)
                for w in range(count):
                    low, high = _larger(x_low[w], y_low[w]), _smaller(x_high[w], y_high[w])
                    bound_cov[w] += high * (1.0 - _larger(x_high[w], y_high[w]))
                    mass[w] += high - low if high > low else 0.0
                    ind[w] += p_f[w] * p_s[w] if high > low else 0.0
        s_sd, f_sd = _row(buf, s + _SPREAD), _row(buf, f + _SPREAD)
        weight, scored = _row(buf, at + _WEIGHT), _row(buf, at + _SCORED)
        for w in range(count):  # else the joint is the independent one: no mutual information
            scored[w] = 1.0 if corr[w] != 0 and s_sd[w] != 0 and f_sd[w] != 0 else 0.0
        for w in range(count):
            sign = 1.0 if corr[w] > 0 else -1.0
            weight[w] = corr[w] / (sign * bound_cov[w] / (f_sd[w] * s_sd[w])) if scored[w] != 0 else 0.0
        ind_sum, logs = _row(buf, at + _IND_SUM), _LOG_JOINT + pair * _PER_LOG
        for w in range(count):
            ind_sum[w] = 0.0
        for slot in range(_SLOTS):  # Nelsen's joint PDF on the support
            joint, ind = _row(buf, at + _JOINT + slot), _row(buf, at + _IND + slot)
            log_joint, log_ind = _row(buf, logs + _LOG_P + slot), _row(buf, logs + _LOG_IND + slot)
            for w in range(count):
                joint[w] = weight[w] * joint[w] + (1.0 - weight[w]) * ind[w]
                log_joint[w] = abs(joint[w]) if joint[w] != 0 else 1.0
            for w in range(count):
                ind_sum[w] += ind[w]
                log_ind[w] = ind[w] if ind[w] > 0 else 1.0
        log_rest = _row(buf, logs + _LOG_REST)
        for w in range(count):
            log_rest[w] = abs(1.0 - weight[w]) if weight[w] != 1 else 1.0


@njit(cache=True, error_model="numpy", nogil=True)
def _score(buf: np.ndarray, count: int) -> float:
    """Per window the entropies, the pairs' normalised MI and the score (fmi.m's tests of equal
    windows first); returns the block's sum of scores. Needs the log2 rows."""
    for m in range(_IMAGES):
        entropy = _row(buf, m * _PER_IMAGE + _ENTROPY)
        for w in range(count):
            entropy[w] = 0.0
        for k in range(_N):
            pdf, log_p = _row(buf, m * _PER_IMAGE + _PDF + k), _row(buf, _LOG_PDF + m * _N + k)
            for w in range(count):
                entropy[w] -= pdf[w] * log_p[w]
    f = 2 * _PER_IMAGE
    h_f, f_sum = _row(buf, f + _ENTROPY), _row(buf, f + _CDF + _N - 1)
    for pair in range(_PAIRS):
        s, at, logs = pair * _PER_IMAGE, _PAIR + pair * _PER_PAIR, _LOG_JOINT + pair * _PER_LOG
        h_s, s_sum = _row(buf, s + _ENTROPY), _row(buf, s + _CDF + _N - 1)
        weight, log_rest, ind_sum = _row(buf, at + _WEIGHT), _row(buf, logs + _LOG_REST), _row(buf, at + _IND_SUM)
        h_joint = _row(buf, at + _H_JOINT)
        # Off the support a cell's joint PDF is (1 - weight) p_F p_S; summed over all 81 cells, its
        # -p log2 p is -(1 - weight) (log_rest sF sS - sS H_F - sF H_S) (sF, sS: the PDFs' sums, 1
        # up to rounding). The support's cells swap that form, -(1 - weight) p_F p_S (log_rest +
        # log2 p_F p_S), for their own -p log2 |p|.
        for w in range(count):
            h_joint[w] = -(1.0 - weight[w]) * (log_rest[w] * f_sum[w] * s_sum[w]
                                               - s_sum[w] * h_f[w] - f_sum[w] * h_s[w])
        for w in range(count):
            h_joint[w] += (1.0 - weight[w]) * ind_sum[w] * log_rest[w]
        for slot in range(_SLOTS):
            joint, ind = _row(buf, at + _JOINT + slot), _row(buf, at + _IND + slot)
            log_joint, log_ind = _row(buf, logs + _LOG_P + slot), _row(buf, logs + _LOG_IND + slot)
            for w in range(count):
                h_joint[w] += (1.0 - weight[w]) * ind[w] * log_ind[w]
            for w in range(count):
                h_joint[w] -= joint[w] * log_joint[w]
        nmi, scored = _row(buf, at + _NMI), _row(buf, at + _SCORED)
        for w in range(count):
            mi = h_s[w] + h_f[w] - h_joint[w]
            nmi[w] = 2.0 * mi / (h_s[w] + h_f[w]) if scored[w] != 0 and mi != 0 else 0.0
    # As fmi.m, the B test ``B == F`` sees F already normalised unless A's window equalled F's.
    a_equal, b_equal = _row(buf, _A_EQUAL), _row(buf, _B_EQUAL)
    for w in range(count):
        a_equal[w] = b_equal[w] = 1.0
    for k in range(_N):
        a, f_value = _row(buf, _VALUE + k), _row(buf, f + _VALUE + k)
        for w in range(count):
            a_equal[w] = a_equal[w] if a[w] == f_value[w] else 0.0
    for k in range(_N):
        b, f_value, f_norm = _row(buf, _PER_IMAGE + _VALUE + k), _row(buf, f + _VALUE + k), _row(buf, f + _NORM + k)
        for w in range(count):
            b_equal[w] = b_equal[w] if b[w] == (f_value[w] if a_equal[w] != 0 else f_norm[w]) else 0.0
    nmi_a, nmi_b = _row(buf, _PAIR + _NMI), _row(buf, _PAIR + _PER_PAIR + _NMI)
    total = 0.0
    for w in range(count):
        total += ((1.0 if a_equal[w] != 0 else nmi_a[w]) + (1.0 if b_equal[w] != 0 else nmi_b[w])) / 2.0
    return total


def _log_rows(buf: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows of log2 inputs that :func:`_describe` and :func:`_couple` fill, as 2-D views of
    ``buf``'s first ``count`` windows."""
    rows = buf.reshape(_ROWS, _BLOCK)[:, :count]
    return rows[_LOG_PDF:_LOG_PDF + _IMAGES * _N], rows[_LOG_JOINT:_LOG_JOINT + _PAIRS * _PER_LOG]


def _score_block(images: tuple[np.ndarray, np.ndarray, np.ndarray], first: int, count: int, buf: np.ndarray,
                 logs: tuple[np.ndarray, np.ndarray]) -> float:
    """Scores windows ``first .. first + count`` in ``buf`` (``logs``: :func:`_log_rows`); returns
    their sum of scores. NumPy's log2 (SIMD, ~0.6 ns a value) runs between the numba kernels."""
    log_pdf, log_joint = logs
    _describe(images, first, count, buf)
    np.log2(log_pdf, out=log_pdf)
    _couple(buf, count)
    np.log2(log_joint, out=log_joint)
    return _score(buf, count)


def window_nmi(s: np.ndarray, f: np.ndarray) -> float:
    """Fast-FMI's normalised MI of one window's raw features ``s`` and ``f`` (9 values each,
    column by column)."""
    windows = tuple(np.ascontiguousarray(np.reshape(x, (FMI_WINDOW, FMI_WINDOW), order="F"), np.float64)
                    for x in (s, s, f))
    buf = np.empty(_ROWS * _BLOCK)
    _score_block(windows, 0, 1, buf, _log_rows(buf, 1))
    return float(buf[(_PAIR + _NMI) * _BLOCK])


def feature_mutual_information(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """Mean Fast-FMI over every 3x3 window of three equal-size feature maps, block by block (a
    work buffer of ~1.5 MB whatever the image size)."""
    images = tuple(np.ascontiguousarray(x, dtype=np.float64) for x in (a, b, f))
    windows = (f.shape[0] - FMI_WINDOW + 1) * (f.shape[1] - FMI_WINDOW + 1)
    buf = np.empty(_ROWS * _BLOCK)
    logs = _log_rows(buf, _BLOCK)
    total = 0.0
    for first in range(0, windows, _BLOCK):
        count = min(_BLOCK, windows - first)
        total += _score_block(images, first, count, buf, logs if count == _BLOCK else _log_rows(buf, count))
    return total / windows


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
