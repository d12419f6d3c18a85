"""Fusion-quality metrics for infrared/visible fusion, vectorised with NumPy/OpenCV.

The field disagrees on details, so this module follows, by default, the conventions of the most
widely used open Python evaluator in the field (``utils/Evaluator.py`` of Zhao et al.'s CDDFuse and
EMMA repositories, run with the versions those repositories pin: scikit-image 0.19, scikit-learn 1.1),
so numbers can be compared with published tables. The conventions, in one place:

* **Grey levels.** Every image is converted to grey and evaluated in **[0, 255]** as float64:
  RGB images use BT.601 luma ``Y = 0.299 R + 0.587 G + 0.114 B`` on the 8-bit values, rounded to the
  nearest integer (what ``cv2.cvtColor(..., COLOR_BGR2GRAY)`` + ``np.round`` gives on float input).
  The fused image, the infrared image and the visible image are all converted the same way.
* **EN** uses 256 bins of the rounded grey levels and log base 2 (bits).
* **MI** uses the joint histogram of the 256 grey levels and the **natural log (nats)**: the evaluator
  calls ``sklearn.metrics.mutual_info_score``, which works in nats. Divide by ``ln 2`` for bits.
* **SSIM** is scikit-image's: 7x7 uniform window, sample covariance, K1 = 0.01, K2 = 0.03, mean over
  the image minus a 3-pixel border. The evaluator passes float images without ``data_range``, which in
  scikit-image 0.19 means the float dtype range ``1 - (-1) = 2`` although the values lie in [0, 255];
  the default ``data_range=2.0`` reproduces this (pass 255.0 for the textbook constants).
* **AG** uses central differences inside the image and one-sided differences at its border (as
  ``np.gradient``), averaged over every pixel, with ``sqrt((Gx^2 + Gy^2) / 2)``.
* **SF**: row and column frequencies are means over their own number of differences.
* **PSNR** uses the peak of the fused image (``max(F)``), not 255, and the mean of the two MSEs.
* **VIF** is the pixel-domain multi-scale VIF (VIFp, 4 scales, sigma_n^2 = 2), computed with each
  source as reference and summed: ``VIF = VIFp(IR, F) + VIFp(VI, F)``.
* **Qabf** uses Sobel gradients with zero padding and Xydeas-Petrovic constants
  (Tg 0.9994, kg -15, Dg 0.5, Ta 0.9879, ka -22, Da 0.8, L = 1). One deliberate difference: where a
  source and the fused gradient strengths are equal and non-zero the strength ratio is 1 (the
  evaluator uses the strength itself there, a quirk that changes Q_g by < 6e-4 on 8-bit images).
* **SSIM, VIF, MI, SCD** are sums over the two sources; **CC** is their mean.
"""
from __future__ import annotations

import math
import os
from typing import Callable

import cv2
import numpy as np

from fusionbench.images import read_vi

METRICS = ("EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM", "PSNR", "CC")
"""Every metric computed by :func:`evaluate`, in table order; all are "higher is better"."""

_LUMA = np.array([0.299, 0.587, 0.114])


def to_grey255(image: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 3) RGB image in [0, 1] -> (H, W) float64 grey levels, integers in [0, 255]."""
    image = np.asarray(image, dtype=np.float64) * 255.0
    if image.ndim == 3:
        image = image @ _LUMA
    if image.ndim != 2:
        raise ValueError(f"expected an (H, W) or (H, W, 3) image, got shape {image.shape}")
    return np.round(image)


def load_grey255(path: str | os.PathLike) -> np.ndarray:
    """Read an image file (any bit depth, grey or colour) as evaluator grey levels (see module doc)."""
    return to_grey255(read_vi(path))


# --- single-image metrics ---------------------------------------------------------------------

def en(f: np.ndarray) -> float:
    """Entropy (bits): ``EN = -sum_l p_l log2 p_l`` over the 256 grey levels (Roberts et al., 2008)."""
    p = np.bincount(f.astype(np.uint8).ravel(), minlength=256) / f.size
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def sd(f: np.ndarray) -> float:
    """Standard deviation of the grey levels (population): ``sqrt(mean((F - mean F)^2))``."""
    return float(np.std(f))


def sf(f: np.ndarray) -> float:
    """Spatial frequency (Eskicioglu & Fisher, 1995): ``sqrt(RF^2 + CF^2)``, with
    ``RF^2 = mean((F[i, j] - F[i, j-1])^2)`` and ``CF^2 = mean((F[i, j] - F[i-1, j])^2)``."""
    rf2 = np.mean(np.diff(f, axis=1) ** 2)
    cf2 = np.mean(np.diff(f, axis=0) ** 2)
    return float(math.sqrt(rf2 + cf2))


def ag(f: np.ndarray) -> float:
    """Average gradient (Cui et al., 2015): ``mean(sqrt((Gx^2 + Gy^2) / 2))`` with ``np.gradient``
    differences (central inside, one-sided on the border), averaged over all H x W pixels."""
    gy, gx = np.gradient(f)
    return float(np.mean(np.sqrt((gx ** 2 + gy ** 2) / 2.0)))


# --- metrics against the two sources ----------------------------------------------------------

def _mutual_information(x: np.ndarray, y: np.ndarray) -> float:
    """``MI(X, Y) = sum p(x, y) ln(p(x, y) / (p(x) p(y)))`` (nats) from the 256 x 256 joint histogram."""
    joint = np.bincount(x.astype(np.int64).ravel() * 256 + y.astype(np.int64).ravel(), minlength=65536)
    p_xy = joint.reshape(256, 256) / x.size
    p_x, p_y = p_xy.sum(axis=1), p_xy.sum(axis=0)
    nz = p_xy > 0
    return float((p_xy[nz] * np.log(p_xy[nz] / np.outer(p_x, p_y)[nz])).sum())


def mi(f: np.ndarray, ir: np.ndarray, vi: np.ndarray) -> float:
    """Mutual information (Qu et al., 2002): ``MI(F, IR) + MI(F, VI)`` in nats."""
    return _mutual_information(f, ir) + _mutual_information(f, vi)


def _correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation ``sum(dx dy) / sqrt(sum(dx^2) sum(dy^2))``; NaN when one input is flat."""
    dx, dy = x - x.mean(), y - y.mean()
    denominator = math.sqrt(float((dx * dx).sum()) * float((dy * dy).sum()))
    return float((dx * dy).sum()) / denominator if denominator > 0 else float("nan")


def cc(f: np.ndarray, ir: np.ndarray, vi: np.ndarray) -> float:
    """Correlation coefficient: ``(r(IR, F) + r(VI, F)) / 2`` with Pearson's r."""
    return (_correlation(ir, f) + _correlation(vi, f)) / 2.0


def scd(f: np.ndarray, ir: np.ndarray, vi: np.ndarray) -> float:
    """Sum of the correlations of differences (Aslantas & Bendes, 2015):
    ``r(F - VI, IR) + r(F - IR, VI)``."""
    return _correlation(f - vi, ir) + _correlation(f - ir, vi)


def psnr(f: np.ndarray, ir: np.ndarray, vi: np.ndarray) -> float:
    """``10 log10(max(F)^2 / MSE)`` with ``MSE = (mean((F - IR)^2) + mean((F - VI)^2)) / 2``;
    infinite when F equals both sources."""
    mse = (np.mean((f - ir) ** 2) + np.mean((f - vi) ** 2)) / 2.0
    return float(10.0 * np.log10(np.max(f) ** 2 / mse)) if mse > 0 else float("inf")


def _box_mean(x: np.ndarray, size: int) -> np.ndarray:
    return cv2.blur(x, (size, size), borderType=cv2.BORDER_REFLECT_101)


def structural_similarity(x: np.ndarray, y: np.ndarray, data_range: float = 2.0, win: int = 7) -> float:
    """SSIM (Wang et al., 2004) as scikit-image computes it: ``win x win`` uniform window, sample
    covariance (factor N / (N - 1)), C1 = (0.01 L)^2, C2 = (0.03 L)^2 with L = ``data_range``,
    mean over the map without a ``win // 2`` border (see the module doc for the default L = 2)."""
    n = win * win
    cov_norm = n / (n - 1.0)
    mx, my = _box_mean(x, win), _box_mean(y, win)
    vx = cov_norm * (_box_mean(x * x, win) - mx * mx)
    vy = cov_norm * (_box_mean(y * y, win) - my * my)
    vxy = cov_norm * (_box_mean(x * y, win) - mx * my)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    ssim_map = ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    pad = win // 2
    return float(ssim_map[pad:-pad, pad:-pad].mean())


def ssim(f: np.ndarray, ir: np.ndarray, vi: np.ndarray, data_range: float = 2.0) -> float:
    """``SSIM(F, IR) + SSIM(F, VI)`` with :func:`structural_similarity`."""
    return structural_similarity(f, ir, data_range) + structural_similarity(f, vi, data_range)


def _gaussian_window(size: int) -> np.ndarray:
    """MATLAB ``fspecial('gaussian', size, size / 5)``: tiny taps zeroed, normalised to sum 1."""
    r = (size - 1) / 2.0
    y, x = np.mgrid[-r:r + 1, -r:r + 1]
    sigma = size / 5.0
    h = np.exp(-(x * x + y * y) / (2.0 * sigma * sigma))
    h[h < np.finfo(h.dtype).eps * h.max()] = 0
    return h / h.sum()


def _filter_valid(x: np.ndarray, window: np.ndarray) -> np.ndarray:
    """2-D filtering keeping only the 'valid' part (the window is symmetric: correlation = convolution)."""
    r = window.shape[0] // 2
    out = cv2.filter2D(x, cv2.CV_64F, window, borderType=cv2.BORDER_CONSTANT)
    return out[r:x.shape[0] - r, r:x.shape[1] - r]


VIF_MIN_SIZE = 65


def vif_p(ref: np.ndarray, dist: np.ndarray, sigma_nsq: float = 2.0, eps: float = 1e-10) -> float:
    """Pixel-domain visual information fidelity (Sheikh & Bovik, 2006) of ``dist`` given ``ref``.

    Over 4 scales (Gaussian windows of 17, 9, 5, 3 taps, sigma = taps / 5; ``ref`` and ``dist`` are
    low-passed and decimated by 2 before scales 2-4), with local variances s1 (ref), s2 (dist) and
    covariance s12: ``g = s12 / s1``, ``sv^2 = s2 - g s12``, and
    ``VIFp = sum log10(1 + g^2 s1 / (sv^2 + sigma_n^2)) / sum log10(1 + s1 / sigma_n^2)``
    (with the usual guards for flat windows and negative gains). 1.0 when both sums are 0.
    Images need at least 65 x 65 pixels (the fourth scale would be empty otherwise).
    """
    if min(ref.shape) < VIF_MIN_SIZE:
        raise ValueError(f"VIF needs images of at least {VIF_MIN_SIZE} x {VIF_MIN_SIZE} pixels, got {ref.shape}")
    ref, dist = ref.astype(np.float64), dist.astype(np.float64)
    num = den = 0.0
    for scale in range(1, 5):
        window = _gaussian_window(2 ** (5 - scale) + 1)
        if scale > 1:
            ref = _filter_valid(ref, window)[::2, ::2]
            dist = _filter_valid(dist, window)[::2, ::2]
        mu1, mu2 = _filter_valid(ref, window), _filter_valid(dist, window)
        s1 = np.maximum(_filter_valid(ref * ref, window) - mu1 * mu1, 0.0)
        s2 = np.maximum(_filter_valid(dist * dist, window) - mu2 * mu2, 0.0)
        s12 = _filter_valid(ref * dist, window) - mu1 * mu2

        g = s12 / (s1 + eps)
        sv = s2 - g * s12
        flat_ref = s1 < eps
        g[flat_ref], sv[flat_ref], s1[flat_ref] = 0.0, s2[flat_ref], 0.0
        flat_dist = s2 < eps
        g[flat_dist], sv[flat_dist] = 0.0, 0.0
        negative = g < 0
        sv[negative], g[negative] = s2[negative], 0.0
        sv = np.maximum(sv, eps)

        num += float(np.log10(1.0 + g * g * s1 / (sv + sigma_nsq)).sum())
        den += float(np.log10(1.0 + s1 / sigma_nsq).sum())
    return num / den if den > 0 else 1.0


def vif(f: np.ndarray, ir: np.ndarray, vi: np.ndarray) -> float:
    """``VIFp(IR, F) + VIFp(VI, F)`` (:func:`vif_p`), the "VIF"/"VIFF" column of recent papers."""
    return vif_p(ir, f) + vif_p(vi, f)


_SOBEL_Y = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], dtype=np.float64)
_SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64)


def _edges(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sobel strength ``g = sqrt(sx^2 + sy^2)`` and orientation ``a = arctan(sy / sx)`` (pi/2 where
    sx = 0), from a true convolution with zero padding (MATLAB ``conv2(..., 'same')``)."""
    flip = (slice(None, None, -1), slice(None, None, -1))
    sx = cv2.filter2D(image, cv2.CV_64F, _SOBEL_X[flip], borderType=cv2.BORDER_CONSTANT)
    sy = cv2.filter2D(image, cv2.CV_64F, _SOBEL_Y[flip], borderType=cv2.BORDER_CONSTANT)
    strength = np.sqrt(sx * sx + sy * sy)
    zero = sx == 0
    angle = np.where(zero, np.pi / 2, np.arctan(sy / np.where(zero, 1.0, sx)))
    return strength, angle


def _edge_preservation(g_src: np.ndarray, a_src: np.ndarray, g_f: np.ndarray, a_f: np.ndarray) -> np.ndarray:
    """Xydeas-Petrovic ``Q^{SF} = Q_g Q_a`` per pixel, with strength ratio ``G = min/max`` (0 when both
    are 0) and orientation similarity ``A = 1 - |a_S - a_F| / (pi / 2)``."""
    high, low = np.maximum(g_src, g_f), np.minimum(g_src, g_f)
    strength = np.divide(low, high, out=np.zeros_like(high), where=high > 0)
    orientation = 1.0 - np.abs(a_src - a_f) / (np.pi / 2)
    q_g = 0.9994 / (1.0 + np.exp(-15.0 * (strength - 0.5)))
    q_a = 0.9879 / (1.0 + np.exp(-22.0 * (orientation - 0.8)))
    return q_g * q_a


def qabf(f: np.ndarray, ir: np.ndarray, vi: np.ndarray) -> float:
    """Gradient-based fusion quality Q^{AB/F} (Xydeas & Petrovic, 2000):
    ``sum(Q^{AF} w_A + Q^{BF} w_B) / sum(w_A + w_B)`` with weights ``w = g^L``, L = 1."""
    g_f, a_f = _edges(f)
    g_a, a_a = _edges(ir)
    g_b, a_b = _edges(vi)
    weights = float((g_a + g_b).sum())
    if weights == 0:
        return float("nan")
    q = _edge_preservation(g_a, a_a, g_f, a_f) * g_a + _edge_preservation(g_b, a_b, g_f, a_f) * g_b
    return float(q.sum() / weights)


_SINGLE: dict[str, Callable[[np.ndarray], float]] = {"EN": en, "SD": sd, "SF": sf, "AG": ag}
_WITH_SOURCES: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], float]] = {
    "MI": mi, "SCD": scd, "VIF": vif, "Qabf": qabf, "SSIM": ssim, "PSNR": psnr, "CC": cc,
}


def evaluate(fused: np.ndarray, ir: np.ndarray, vi: np.ndarray) -> dict[str, float]:
    """Every metric of :data:`METRICS` for one triple of evaluator grey images (:func:`to_grey255`)."""
    if not (fused.shape == ir.shape == vi.shape and fused.ndim == 2):
        raise ValueError(f"fused {fused.shape}, IR {ir.shape} and VI {vi.shape} must be equal (H, W) arrays")
    fused, ir, vi = (np.asarray(x, dtype=np.float64) for x in (fused, ir, vi))
    values = {name: fn(fused) for name, fn in _SINGLE.items()}
    values.update({name: fn(fused, ir, vi) for name, fn in _WITH_SOURCES.items()})
    return {name: values[name] for name in METRICS}


def evaluate_files(fused: str | os.PathLike, ir: str | os.PathLike, vi: str | os.PathLike) -> dict[str, float]:
    """:func:`evaluate` on three image files; a size mismatch is an error naming the fused file."""
    images = [load_grey255(path) for path in (fused, ir, vi)]
    if not images[0].shape == images[1].shape == images[2].shape:
        raise ValueError(
            f"{fused}: size {images[0].shape[::-1]} differs from its sources "
            f"(IR {images[1].shape[::-1]}, VI {images[2].shape[::-1]})"
        )
    return evaluate(*images)
