"""Two-scale fusion: each source = base layer (large-scale intensity) + detail layer (small structure),
each layer fused with its own weight maps derived from saliency.

- gff: Li, Kang & Hu, "Image fusion with guided filtering", IEEE Trans. Image Processing 22(7), 2013.
  Base = 31x31 mean, detail = source - base; saliency = Gaussian(11x11, sigma 5) of |3x3 Laplacian|;
  binary weight maps (which source is most salient) refined by a guided filter with the source as
  guide: (r, eps) = (45, 0.3) for the base and (7, 1e-6) for the detail layer; weights clipped to
  [0, 1] and normalised to sum to 1. Borders replicated, as in the authors' MATLAB code.
- tif: Bavirisetti & Dhuli, "Two-scale image fusion of visible and infrared images using saliency
  detection", Infrared Physics & Technology 76, 2016. Base = 35x35 mean (circular borders), detail =
  source - base; saliency = (mean-filtered - 3x3 median-filtered)^2; detail weights = saliency /
  sum of saliencies; bases averaged. As in the authors' code; where both saliencies are 0 (flat
  regions, a division by zero there) the details are averaged.
"""
from __future__ import annotations

from typing import Annotated

import cv2
import numpy as np
from pydantic import Field
from scipy.ndimage import uniform_filter

from fusion.baselines import LuminanceFuser
from fusion.registry import register

Radius = Annotated[int, Field(ge=0)]  # guided-filter window radius in pixels
Positive = Annotated[float, Field(gt=0)]  # guided-filter regularisation (0 divides by zero in flat regions)

_LAPLACIAN = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], np.float32)


def box_mean(image: np.ndarray, radius: int) -> np.ndarray:
    """Mean over the (2r+1)^2 window clipped to the image (He et al.'s box filter)."""
    size = (2 * radius + 1, 2 * radius + 1)
    total = cv2.boxFilter(image, -1, size, normalize=False, borderType=cv2.BORDER_CONSTANT)
    rows, cols = (np.minimum(np.arange(n) + radius, n - 1) - np.maximum(np.arange(n) - radius, 0) + 1
                  for n in image.shape)
    return total / np.outer(rows, cols).astype(np.float32)


def median3(image: np.ndarray) -> np.ndarray:
    """3x3 median with zero padding (MATLAB's medfilt2 default, used by the TIF authors)."""
    padded = cv2.copyMakeBorder(image, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    return cv2.medianBlur(padded, 3)[1:-1, 1:-1]


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """Grey guided filter (He, Sun & Tang, IEEE TPAMI 35(6), 2013, Alg. 1)."""
    mean_i, mean_p = box_mean(guide, radius), box_mean(src, radius)
    var_i = box_mean(guide * guide, radius) - mean_i * mean_i
    cov_ip = box_mean(guide * src, radius) - mean_i * mean_p
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return box_mean(a, radius) * guide + box_mean(b, radius)


def _normalised(weights: list[np.ndarray]) -> list[np.ndarray]:
    weights = [np.clip(w, 0.0, 1.0) + 1e-12 for w in weights]
    total = sum(weights)
    return [w / total for w in weights]


def gff_rule(ir: np.ndarray, y: np.ndarray, r1: int = 45, eps1: float = 0.3, r2: int = 7,
             eps2: float = 1e-6) -> np.ndarray:
    sources = (ir, y)
    bases = [cv2.blur(s, (31, 31), borderType=cv2.BORDER_REPLICATE) for s in sources]
    saliency = [
        cv2.GaussianBlur(np.abs(cv2.filter2D(s, -1, _LAPLACIAN, borderType=cv2.BORDER_REPLICATE)),
                         (11, 11), 5, borderType=cv2.BORDER_REPLICATE)
        for s in sources
    ]
    ir_wins = saliency[0] >= saliency[1]
    masks = [ir_wins.astype(np.float32), (~ir_wins).astype(np.float32)]
    w_base = _normalised([guided_filter(s, m, r1, eps1) for s, m in zip(sources, masks)])
    w_detail = _normalised([guided_filter(s, m, r2, eps2) for s, m in zip(sources, masks)])
    return sum(wb * b + wd * (s - b) for s, b, wb, wd in zip(sources, bases, w_base, w_detail))


def tif_rule(ir: np.ndarray, y: np.ndarray, mean_size: int = 35) -> np.ndarray:
    bases, details, saliency = [], [], []
    for s in (ir, y):
        base = uniform_filter(s, mean_size, mode="wrap")
        median = median3(s)
        bases.append(base)
        details.append(s - base)
        saliency.append((base - median) ** 2)
    total = saliency[0] + saliency[1]
    flat = total == 0
    w_ir = np.where(flat, 0.5, saliency[0] / np.where(flat, 1.0, total))
    return 0.5 * (bases[0] + bases[1]) + w_ir * details[0] + (1.0 - w_ir) * details[1]


@register("gff")
def _gff(r1: Radius = 45, eps1: Positive = 0.3, r2: Radius = 7, eps2: Positive = 1e-6) -> LuminanceFuser:
    return LuminanceFuser(gff_rule, {"r1": int(r1), "eps1": float(eps1), "r2": int(r2), "eps2": float(eps2)})


@register("tif")
def _tif(mean_size: Annotated[int, Field(ge=1)] = 35) -> LuminanceFuser:
    return LuminanceFuser(tif_rule, {"mean_size": int(mean_size)})
