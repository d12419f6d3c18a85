"""Histogram metrics of F against the sources: MI, NMI, CE, TE, QNCIE."""
from __future__ import annotations

import math

import numpy as np

from fusion.metrics.conventions import Convention
from fusion.metrics.intensity import entropy_bits, levels


def _minmax_levels(x: np.ndarray) -> np.ndarray:
    """VIFB's MI binning: ``round(255 (x - min) / (max - min))`` (half away from zero), 0 if flat."""
    low, high = float(x.min()), float(x.max())
    if high == low:
        return np.zeros(x.shape, np.int64)
    return np.floor((x.astype(np.float64) - low) / (high - low) * 255 + 0.5).astype(np.int64)


def joint_histogram(x: np.ndarray, y: np.ndarray, c: Convention) -> np.ndarray:
    """256 x 256 joint probabilities of the two images' bins."""
    bins = _minmax_levels if c.mi_minmax else levels
    counts = np.bincount((bins(x) * 256 + bins(y)).ravel(), minlength=65536)
    return counts.reshape(256, 256) / x.size


def mutual_information(x: np.ndarray, y: np.ndarray, c: Convention, base: float | None = None) -> float:
    """``sum p(x, y) log(p(x, y) / (p(x) p(y)))`` in the convention's log base (or ``base``)."""
    p_xy = joint_histogram(x, y, c)
    p_x, p_y = p_xy.sum(axis=1), p_xy.sum(axis=0)
    nz = p_xy > 0
    value = float((p_xy[nz] * np.log(p_xy[nz] / np.outer(p_x, p_y)[nz])).sum())
    return max(value, 0.0) / math.log(base or c.mi_log)


def mi(f: np.ndarray, ir: np.ndarray, vi: np.ndarray, c: Convention) -> float:
    """Mutual information (Qu et al., 2002): ``MI(F, IR) + MI(F, VI)``; 0 when F is flat."""
    return mutual_information(f, ir, c) + mutual_information(f, vi, c)


def nmi(f: np.ndarray, ir: np.ndarray, vi: np.ndarray, c: Convention) -> float:
    """Normalised MI (Hossny et al., 2008): ``2 [MI(F,A) / (H(F) + H(A)) + MI(F,B) / (H(F) + H(B))]``
    in bits; a term is undefined (NaN) when F and its source are both flat."""
    h_f = entropy_bits(f)
    total = 0.0
    for source in (ir, vi):
        denominator = h_f + entropy_bits(source)
        if denominator == 0:
            return float("nan")
        total += mutual_information(f, source, c, base=2) / denominator
    return 2.0 * total


def _relative_entropy(source: np.ndarray, f: np.ndarray) -> float:
    """``sum P_S log2(P_S / P_F)`` over the grey levels where both histograms are non-zero (VIFB)."""
    p_s = np.bincount(levels(source).ravel(), minlength=256) / source.size
    p_f = np.bincount(levels(f).ravel(), minlength=256) / f.size
    both = (p_s > 0) & (p_f > 0)
    return float((p_s[both] * np.log2(p_s[both] / p_f[both])).sum())


def ce(f: np.ndarray, ir: np.ndarray, vi: np.ndarray, c: Convention) -> float:
    """Cross entropy (VIFB ``metricsCross_entropy.m``): mean of the two sources' relative entropy
    to F's grey-level histogram, in bits; 0 when F has the sources' histograms."""
    return (_relative_entropy(vi, f) + _relative_entropy(ir, f)) / 2.0


TSALLIS_Q = 1.85


def _tsallis(x: np.ndarray, f: np.ndarray, c: Convention) -> float:
    p_xf = joint_histogram(x, f, c)
    p_x, p_f = p_xf.sum(axis=1), p_xf.sum(axis=0)
    nz = p_xf > 0
    ratio = p_xf[nz] ** TSALLIS_Q / np.outer(p_x, p_f)[nz] ** (TSALLIS_Q - 1)
    return float((1.0 - ratio.sum()) / (1.0 - TSALLIS_Q))


def te(f: np.ndarray, ir: np.ndarray, vi: np.ndarray, c: Convention) -> float:
    """Tsallis entropy metric (Cvejic et al., 2006), q = 1.85: ``I_q(F, IR) + I_q(F, VI)`` with
    ``I_q = (1 - sum p_xf^q / (p_x p_f)^(q-1)) / (1 - q)``; 0 when F is flat."""
    return _tsallis(ir, f, c) + _tsallis(vi, f, c)


def _nonlinear_correlation(x: np.ndarray, y: np.ndarray, c: Convention) -> float:
    """NCC (Wang et al., 2005): ``H(X) + H(Y) - H(X, Y)`` in base-256 logarithms on 256 grey levels."""
    return mutual_information(x, y, c, base=256)


def qncie(f: np.ndarray, ir: np.ndarray, vi: np.ndarray, c: Convention) -> float:
    """Nonlinear correlation information entropy (Wang, Shen & Zhang, 2005): eigenvalues l of the
    3 x 3 NCC matrix of (IR, VI, F) give ``1 + sum (l/3) log_256(l/3)``."""
    r_iv, r_if, r_vf = (_nonlinear_correlation(a, b, c) for a, b in ((ir, vi), (ir, f), (vi, f)))
    matrix = np.array([[1.0, r_iv, r_if], [r_iv, 1.0, r_vf], [r_if, r_vf, 1.0]])
    eigen = np.linalg.eigvalsh(matrix) / 3.0
    eigen = eigen[eigen > 0]
    return float(1.0 + (eigen * np.log(eigen) / math.log(256)).sum())
