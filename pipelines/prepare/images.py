"""Reading every image of a pair once: size check, file hashes and a tiny thumbnail.

The thumbnail (IR and VI grey, downscaled to :data:`THUMB_SIZE`) is what scene grouping and the
near-duplicate leakage count compare; keeping it here means each file is decoded exactly once.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fusionbench.files import sha256_file
from fusionbench.images import ImageError, read_ir, read_vi

THUMB_SIZE = (32, 24)   # (width, height)


@dataclass(frozen=True)
class PairImages:
    width: int
    height: int
    ir_sha256: str
    vi_sha256: str
    thumbnail: np.ndarray   # float32, IR thumbnail then VI thumbnail, flattened


def inspect_pair(ir_path: Path, vi_path: Path) -> PairImages:
    """Decode both images (broken or truncated files raise :class:`ImageError` naming the file)
    and check that they have the same size."""
    ir = read_ir(ir_path)
    vi = read_vi(vi_path)
    if ir.shape[:2] != vi.shape[:2]:
        raise ImageError(f"{ir_path}: infrared is {ir.shape[1]}x{ir.shape[0]} but the visible image "
                         f"{vi_path.name} is {vi.shape[1]}x{vi.shape[0]}")
    vi_grey = cv2.cvtColor(vi, cv2.COLOR_RGB2GRAY) if vi.ndim == 3 else vi
    thumbnail = np.concatenate([_thumb(ir), _thumb(vi_grey)])
    return PairImages(int(ir.shape[1]), int(ir.shape[0]), sha256_file(ir_path), sha256_file(vi_path), thumbnail)


def _thumb(grey: np.ndarray) -> np.ndarray:
    return cv2.resize(grey, THUMB_SIZE, interpolation=cv2.INTER_AREA).ravel()
