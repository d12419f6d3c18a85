"""The sources as methods: the paper's IR and VI columns (detection on one modality alone)."""
from __future__ import annotations

import numpy as np

from fusion.color import to_uint8
from fusion.registry import register


def infrared(ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
    """The infrared image, grey replicated to 3 channels."""
    return to_uint8(np.repeat(ir[..., None], 3, axis=2))


def visible(ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
    """The visible image as RGB (a grey one replicated to 3 channels)."""
    return to_uint8(vi if vi.ndim == 3 else np.repeat(vi[..., None], 3, axis=2))


@register("ir")
def _ir():
    return infrared


@register("vi")
def _vi():
    return visible
