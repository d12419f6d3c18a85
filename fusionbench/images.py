"""Image reading and writing with errors that name the file.

Convention used everywhere in the project: infrared images are (H, W) float32 in [0, 1]
(8- or 16-bit sources are normalised by their bit depth); visible images are (H, W, 3)
RGB float32 in [0, 1], or (H, W) when the source is grey.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from fusionbench.errors import FusionBenchError
from fusionbench.files import atomic_write_bytes
from fusionbench.pairing import IMAGE_SUFFIXES  # noqa: F401  (re-exported: one list of image suffixes)


class ImageError(FusionBenchError):
    """An image that cannot be used; the message names the file and the problem."""


def decode_image(path: str | os.PathLike, flags: int = cv2.IMREAD_UNCHANGED) -> np.ndarray:
    """The image file decoded by OpenCV with ``flags``; a missing, empty, truncated or undecodable file is
    an :class:`ImageError` naming it (checked before decoding: OpenCV raises on empty input and decodes some
    truncated files without a word)."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: file not found")
    data = np.fromfile(path, dtype=np.uint8)
    if data.size == 0:
        raise ImageError(f"{path}: empty file")
    if _truncated(data, path.suffix.lower()):
        raise ImageError(f"{path}: truncated image file")
    image = cv2.imdecode(data, flags)
    if image is None:
        raise ImageError(f"{path}: not a readable image (corrupt or unsupported format)")
    return image


def _truncated(data: np.ndarray, suffix: str) -> bool:
    """A PNG/JPEG that starts right but lacks its end marker (OpenCV may decode those silently,
    with grey rows, or fail without saying why)."""
    if suffix == ".png":
        return data[:8].tobytes() == b"\x89PNG\r\n\x1a\n" and b"IEND" not in data[-12:].tobytes()
    if suffix in (".jpg", ".jpeg"):
        return data[:2].tobytes() == b"\xff\xd8" and b"\xff\xd9" not in data[-64:].tobytes()
    return False


def _normalise(image: np.ndarray, path: Path) -> np.ndarray:
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535.0
    if image.dtype in (np.float32, np.float64):
        return np.clip(image.astype(np.float32), 0.0, 1.0)
    raise ImageError(f"{path}: unsupported pixel type {image.dtype}")


def read_ir(path: str | os.PathLike) -> np.ndarray:
    """Infrared image as (H, W) float32 in [0, 1]; colour files are converted to grey."""
    path = Path(path)
    image = decode_image(path)
    if image.ndim == 3:
        code = cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        image = cv2.cvtColor(image, code)
    return _normalise(image, path)


def read_vi(path: str | os.PathLike) -> np.ndarray:
    """Visible image as (H, W, 3) RGB float32 in [0, 1], or (H, W) when the file is grey."""
    path = Path(path)
    image = decode_image(path)
    if image.ndim == 3:
        if image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return _normalise(image, path)


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of an image file, reading it fully (so broken files are caught)."""
    image = decode_image(path)
    return int(image.shape[1]), int(image.shape[0])


def write_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write uint8/uint16 grey or RGB atomically: a temporary file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(path.suffix or ".png", image)
    if not ok:
        raise ImageError(f"{path}: could not encode image of shape {image.shape}")
    atomic_write_bytes(path, encoded.tobytes())


