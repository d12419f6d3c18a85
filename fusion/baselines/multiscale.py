"""Multi-scale transform fusion: decompose both sources, fuse band by band, reconstruct.

Both methods use the classic coefficient rules (as in the multi-scale-transform framework of
Liu, Liu & Wang, Information Fusion 24, 2015): the coarsest (low-pass) band is averaged, every
detail band takes the coefficient of larger magnitude ("choose-max-abs").

- laplacian: Laplacian pyramid (Burt & Adelson, IEEE Trans. Communications 31(4), 1983), fused as
  in Burt & Adelson, "Merging images through pattern decomposition", Proc. SPIE 575, 1985.
- dwt: 2-D discrete wavelet transform (Li, Manjunath & Mitra, "Multisensor image fusion using the
  wavelet transform", Graphical Models and Image Processing 57(3), 1995), with PyWavelets.

Both reconstruct a source exactly (to float precision) when the two inputs are identical.
"""
from __future__ import annotations

from typing import Annotated

import cv2
import numpy as np
import pywt
from pydantic import Field

from fusion.baselines import LuminanceFuser
from fusion.registry import FuserError, register


def choose_max_abs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.where(np.abs(a) >= np.abs(b), a, b)


def laplacian_pyramid(image: np.ndarray, levels: int) -> list[np.ndarray]:
    """``levels`` detail bands (finest first) followed by the low-pass residual."""
    bands, current = [], image
    for _ in range(levels):
        smaller = cv2.pyrDown(current)
        bands.append(current - cv2.pyrUp(smaller, dstsize=current.shape[::-1]))
        current = smaller
    return [*bands, current]


def reconstruct_laplacian(bands: list[np.ndarray]) -> np.ndarray:
    image = bands[-1]
    for detail in reversed(bands[:-1]):
        image = cv2.pyrUp(image, dstsize=detail.shape[::-1]) + detail
    return image


def laplacian_rule(ir: np.ndarray, y: np.ndarray, levels: int = 4) -> np.ndarray:
    """Laplacian pyramid fusion; ``levels`` is capped so the coarsest band keeps at least 2 pixels a side."""
    levels = max(0, min(levels, int(np.log2(min(ir.shape))) - 1))
    a, b = laplacian_pyramid(ir, levels), laplacian_pyramid(y, levels)
    fused = [choose_max_abs(da, db) for da, db in zip(a[:-1], b[:-1])]
    return reconstruct_laplacian([*fused, 0.5 * (a[-1] + b[-1])])


def dwt_rule(ir: np.ndarray, y: np.ndarray, wavelet: str = "db1", levels: int = 4) -> np.ndarray:
    """Wavelet fusion; ``levels`` is capped at PyWavelets' maximum useful level for the image size."""
    levels = max(0, min(levels, pywt.dwt_max_level(min(ir.shape), wavelet)))
    a = pywt.wavedec2(ir, wavelet, level=levels)
    b = pywt.wavedec2(y, wavelet, level=levels)
    fused = [0.5 * (a[0] + b[0])]
    fused += [tuple(choose_max_abs(da, db) for da, db in zip(la, lb)) for la, lb in zip(a[1:], b[1:])]
    height, width = ir.shape
    return pywt.waverec2(fused, wavelet)[:height, :width].astype(np.float32)


Levels = Annotated[int, Field(ge=1)]  # decomposition levels (capped by the image size when fusing)


@register("laplacian")
def _laplacian(levels: Levels = 4) -> LuminanceFuser:
    return LuminanceFuser(laplacian_rule, {"levels": int(levels)})


@register("dwt")
def _dwt(wavelet: str = "db1", levels: Levels = 4) -> LuminanceFuser:
    if wavelet not in pywt.wavelist(kind="discrete"):
        raise FuserError(f"dwt: unknown discrete wavelet {wavelet!r} (see pywt.wavelist(kind='discrete'))")
    return LuminanceFuser(dwt_rule, {"wavelet": wavelet, "levels": int(levels)})
