"""Pixel-wise rules, the simplest fusion baselines (e.g. Piella, "A general framework for
multiresolution image fusion", Information Fusion 4(4), 2003, Sec. 2).

- average:    F = (I + Y) / 2
- choose-max: F = max(I, Y), the brighter source at every pixel (IR targets are usually bright)
- pca:        F = p1 I + p2 Y with (p1, p2) the principal eigenvector of the 2x2 covariance of the two
              images, normalised to sum to 1 (Naidu & Raol, "Pixel-level image fusion using wavelets
              and principal component analysis", Defence Science Journal 58(3), 2008). Absolute values
              of the eigenvector are used so anti-correlated sources cannot give negative weights;
              two constant images are averaged.
"""
from __future__ import annotations

import numpy as np

from fusion.baselines import LuminanceFuser
from fusion.registry import register


def average_rule(ir: np.ndarray, y: np.ndarray) -> np.ndarray:
    return 0.5 * (ir + y)


def max_rule(ir: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.maximum(ir, y)


def pca_weights(ir: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    covariance = np.cov(np.stack([ir.ravel(), y.ravel()]).astype(np.float64))
    values, vectors = np.linalg.eigh(covariance)
    principal = np.abs(vectors[:, np.argmax(values)])
    if values.max() <= 0 or principal.sum() == 0:
        return 0.5, 0.5
    p_ir, p_y = principal / principal.sum()
    return float(p_ir), float(p_y)


def pca_rule(ir: np.ndarray, y: np.ndarray) -> np.ndarray:
    p_ir, p_y = pca_weights(ir, y)
    return p_ir * ir + p_y * y


@register("average")
def _average() -> LuminanceFuser:
    return LuminanceFuser(average_rule)


@register("max")
def _max() -> LuminanceFuser:
    return LuminanceFuser(max_rule)


@register("pca")
def _pca() -> LuminanceFuser:
    return LuminanceFuser(pca_rule)
