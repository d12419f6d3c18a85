"""Pixel-wise rules, the simplest fusion baselines (e.g. Piella, "A general framework for
multiresolution image fusion", Information Fusion 4(4), 2003, Sec. 2).

- average:    F = (I + Y) / 2
- choose-max: F = max(I, Y), the brighter source at every pixel (IR targets are usually bright)
"""
from __future__ import annotations

import numpy as np

from fusion.baselines import LuminanceFuser
from fusion.registry import register


def average_rule(ir: np.ndarray, y: np.ndarray) -> np.ndarray:
    return 0.5 * (ir + y)


def max_rule(ir: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.maximum(ir, y)


@register("average")
def _average() -> LuminanceFuser:
    return LuminanceFuser(average_rule)


@register("max")
def _max() -> LuminanceFuser:
    return LuminanceFuser(max_rule)
