"""Feature mutual information: FMI_pixel, FMI_dct, FMI_w (Haghighat et al. 2011; Fast-FMI, 2014).

Follows Haghighat's MATLAB ``fmi.m`` (as Linfeng-Tang's kit ships it, ``analysis_fmi.m``): feature
maps of the three images, 3x3 sliding windows over the 'valid' part; in each window the source's
and F's features are min-max normalised (a flat window becomes ones), turned into marginal PDFs
over the 9 positions (MATLAB's column-major order), coupled into a joint PDF by Nelsen's method
(a mix of the independent PDF and Frechet's upper bound for a non-negative correlation of the
PDFs, the lower bound for a negative one), and scored as normalised MI ``2 I / (H_S + H_F)``
(bits); a window where the source's features equal F's scores 1. The value is the mean over the
windows of the mean of the IR and VI scores.
"""
from __future__ import annotations

import numpy as np
import pywt
from numpy.lib.stride_tricks import sliding_window_view
from scipy.fft import dctn

from fusion.metrics.conventions import Convention

FMI_WINDOW = 3
_CHUNK = 1 << 15
"""Windows scored at once (bounds the (n, 9, 9) joint arrays to a few MB each)."""


def _windows(feature: np.ndarray) -> np.ndarray:
    """(n, 9) features of every 3x3 window, each flattened column by column (MATLAB ``x(:)``)."""
    view = sliding_window_view(feature, (FMI_WINDOW, FMI_WINDOW))
    return view.swapaxes(-1, -2).reshape(-1, FMI_WINDOW * FMI_WINDOW)


def _minmax(x: np.ndarray) -> np.ndarray:
    """Each row scaled to [0, 1]; a flat row becomes ones."""
    low, high = x.min(axis=1, keepdims=True), x.max(axis=1, keepdims=True)
    flat = high == low
    return np.where(flat, 1.0, (x - low) / np.where(flat, 1.0, high - low))


def _plogp(p: np.ndarray) -> np.ndarray:
    """``-p log2 |p|`` with 0 where p = 0 (MATLAB's ``real(-p log2(p))`` for a negative p)."""
    out = np.zeros_like(p)
    nz = p != 0
    out[nz] = -p[nz] * np.log2(np.abs(p[nz]))
    return out


def _rectangles(bound: np.ndarray) -> np.ndarray:
    """Probability masses of a bivariate CDF ``bound[:, i, j]``: its 2-D differences, zero below."""
    padded = np.pad(bound, ((0, 0), (1, 0), (1, 0)))
    return padded[:, 1:, 1:] - padded[:, :-1, 1:] - padded[:, 1:, :-1] + padded[:, :-1, :-1]


def _window_nmi(s: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Fast-FMI's normalised MI of normalised (n, 9) window features ``s`` and ``f``."""
    s_pdf = s / s.sum(axis=1, keepdims=True)
    f_pdf = f / f.sum(axis=1, keepdims=True)
    s_cdf, f_cdf = np.cumsum(s_pdf, axis=1), np.cumsum(f_pdf, axis=1)
    # Pearson's r of the PDFs equals that of the normalised features; computed on those, a flat
    # window's deviations are exactly 0 (r = 0), where fmi.m's PDF rounding noise can give +-1.
    s_dev = s - s.mean(axis=1, keepdims=True)
    f_dev = f - f.mean(axis=1, keepdims=True)
    cov = (s_dev * f_dev).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = np.where(cov == 0, 0.0, cov / np.sqrt((s_dev ** 2).sum(axis=1) * (f_dev ** 2).sum(axis=1)))
    index = np.arange(1, s.shape[1] + 1, dtype=np.float64)

    def spread(pdf: np.ndarray) -> np.ndarray:
        return np.sqrt(np.maximum(pdf @ index ** 2 - (pdf @ index) ** 2, 0.0))

    s_sd, f_sd = spread(s_pdf), spread(f_pdf)
    fc, sc = f_cdf[:, :, None], s_cdf[:, None, :]  # rows: F's positions, columns: the source's
    product = fc * sc
    bound = np.where((corr >= 0)[:, None, None], np.minimum(fc, sc), np.maximum(fc + sc - 1, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        bound_corr = (bound - product).sum(axis=(1, 2)) / (f_sd * s_sd)
        weight = np.where((corr == 0) | (s_sd == 0) | (f_sd == 0), 0.0, corr / bound_corr)
    joint = weight[:, None, None] * _rectangles(bound) + (1 - weight[:, None, None]) * (
        f_pdf[:, :, None] * s_pdf[:, None, :])
    h_s, h_f = _plogp(s_pdf).sum(axis=1), _plogp(f_pdf).sum(axis=1)
    mi = h_s + h_f - _plogp(joint).sum(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(mi == 0, 0.0, 2 * mi / (h_s + h_f))


def _fmi_windows(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Per-window ``(FMI(A, F) + FMI(B, F)) / 2`` of (n, 9) raw window features. As ``fmi.m``, the
    B test ``B == F`` sees F already normalised unless A's window equalled F's."""
    a_equal = (a == f).all(axis=1)
    f_norm = _minmax(f)
    f_seen_by_b = np.where(a_equal[:, None], f, f_norm)
    b_equal = (b == f_seen_by_b).all(axis=1)
    fmi_af = np.where(a_equal, 1.0, _window_nmi(_minmax(a), f_norm))
    fmi_bf = np.where(b_equal, 1.0, _window_nmi(_minmax(b), f_norm))
    return (fmi_af + fmi_bf) / 2


def feature_mutual_information(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """Mean Fast-FMI over every 3x3 window of three equal-size feature maps."""
    wa, wb, wf = (_windows(np.asarray(x, np.float64)) for x in (a, b, f))
    total = 0.0
    for start in range(0, len(wf), _CHUNK):
        part = slice(start, start + _CHUNK)
        total += float(_fmi_windows(wa[part], wb[part], wf[part]).sum())
    return total / len(wf)


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
