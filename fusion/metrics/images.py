"""From image files and arrays to the 2-D grey-level triples the metrics see, per convention.

Arrays handed to :func:`grey_triples` hold 8-bit-scale values in [0, 255] as read from the files:
(H, W) grey or (H, W, 3) RGB. What a convention expects is checked here, so a metric never
truncates or wraps a value silently.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from fusion.metrics.conventions import Convention
from fusionbench.errors import FusionBenchError
from fusionbench.images import ImageError, decode_image, read_vi


class MetricInputError(FusionBenchError, ValueError):
    """Arrays a convention cannot score (wrong shape, values outside [0, 255], fractions)."""


# MATLAB rgb2gray: the first row of inv([1 .956 .621; 1 -.272 -.647; 1 -1.106 1.703]).
_MATLAB_LUMA = np.linalg.inv(np.array([[1.0, 0.956, 0.621], [1.0, -0.272, -0.647], [1.0, -1.106, 1.703]]))[0]
_BT601_LUMA = np.array([0.299, 0.587, 0.114])


def check_image(image: np.ndarray, convention: Convention, what: str) -> np.ndarray:
    """``image`` as float64, refused unless (H, W) or (H, W, 3), finite, in [0, 255] and (for 8-bit
    conventions) integer-valued."""
    image = np.asarray(image)
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise MetricInputError(f"{what}: expected an (H, W) or (H, W, 3) image, got shape {image.shape}")
    if not np.issubdtype(image.dtype, np.number):
        raise MetricInputError(f"{what}: expected numbers, got dtype {image.dtype}")
    values = image.astype(np.float64)
    if not np.isfinite(values).all():
        raise MetricInputError(f"{what}: contains NaN or infinite values")
    low, high = float(values.min()), float(values.max())
    if low < 0 or high > 255:
        raise MetricInputError(f"{what}: values span [{low:g}, {high:g}]; the metrics expect 8-bit grey "
                               "levels in [0, 255] (scale images in [0, 1] by 255)")
    if convention.integer_levels and not np.array_equal(values, np.round(values)):
        raise MetricInputError(f"{what}: has fractional grey levels; the {convention.name!r} convention "
                               "scores 8-bit images (integers in [0, 255]); round them or use 'exact'")
    return values


def to_grey(image: np.ndarray, convention: Convention) -> np.ndarray:
    """(H, W[, 3]) RGB values in [0, 255] -> (H, W) grey in the convention's dtype."""
    if image.ndim == 2:
        return image.astype(convention.dtype)
    if convention.grey == "opencv_float32_round":
        bgr = np.ascontiguousarray(image[..., ::-1], dtype=np.float32)
        return np.round(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)).astype(convention.dtype)
    if convention.grey == "pil_L":
        r, g, b = (image[..., k].astype(np.int64) for k in range(3))
        return ((19595 * r + 38470 * g + 7471 * b + 32768) >> 16).astype(convention.dtype)
    if convention.grey == "matlab_rgb2gray":
        grey = image @ _MATLAB_LUMA
        return (np.floor(grey + 0.5) if convention.integer_levels else grey).astype(convention.dtype)
    return (image @ _BT601_LUMA).astype(convention.dtype)


def grey_triples(fused: np.ndarray, ir: np.ndarray, vi: np.ndarray,
                 convention: Convention) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The (F, IR, VI) grey triples to score: one, or one per channel of a colour fused image in
    ``per_channel`` conventions (a grey source is used for every channel, as VIFB does)."""
    fused = check_image(fused, convention, "fused image")
    ir = check_image(ir, convention, "infrared image")
    vi = check_image(vi, convention, "visible image")
    if not fused.shape[:2] == ir.shape[:2] == vi.shape[:2]:
        raise MetricInputError(f"fused {fused.shape[:2]}, infrared {ir.shape[:2]} and visible "
                               f"{vi.shape[:2]} images must have the same height and width")
    if convention.colour == "per_channel" and fused.ndim == 3:
        def channel(x: np.ndarray, k: int) -> np.ndarray:
            return (x[..., k] if x.ndim == 3 else x).astype(convention.dtype)
        return [(channel(fused, k), channel(ir, k), channel(vi, k)) for k in range(3)]
    return [(to_grey(fused, convention), to_grey(ir, convention), to_grey(vi, convention))]


def read_image(path: str | os.PathLike, convention: Convention) -> np.ndarray:
    """One image file as the convention's toolkit reads it: (H, W) or (H, W, 3) RGB in [0, 255].

    ``cddfuse``: ``cv2.imread`` in colour mode (16-bit files are shifted to 8 bits, v >> 8);
    ``vifb``: the file's own 8-bit channels (other bit depths are refused: MATLAB would not
    scale them); ``exact``: any bit depth scaled to [0, 255] without rounding.
    """
    path = Path(path)
    if convention.name == "exact":
        return read_vi(path).astype(np.float64) * 255.0
    raw = decode_image(path, cv2.IMREAD_UNCHANGED if convention.colour == "per_channel" else cv2.IMREAD_COLOR)
    if raw.dtype != np.uint8:
        raise ImageError(f"{path}: {raw.dtype} pixels; the {convention.name!r} convention scores 8-bit "
                         "images (use 'exact' for other bit depths)")
    if raw.ndim == 3 and raw.shape[2] == 4:
        raise ImageError(f"{path}: has an alpha channel; the {convention.name!r} convention expects "
                         "grey or RGB images")
    return raw[..., ::-1] if raw.ndim == 3 else raw
