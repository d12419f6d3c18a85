"""Image reading and atomic writing with errors that name the file.

Convention used everywhere in the project: infrared images are (H, W) float32 in [0, 1]
(8- or 16-bit sources are normalised by their bit depth); visible images are (H, W, 3)
RGB float32 in [0, 1], or (H, W) when the source is grey.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

from fusionbench.errors import FusionBenchError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class ImageError(FusionBenchError):
    """An image that cannot be used; the message names the file and the problem."""


def _read_raw(path: Path) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: file not found")
    data = np.fromfile(path, dtype=np.uint8)
    if data.size == 0:
        raise ImageError(f"{path}: empty file")
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if _truncated(data, path.suffix.lower()):
        raise ImageError(f"{path}: truncated image file")
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
    image = _read_raw(path)
    if image.ndim == 3:
        code = cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        image = cv2.cvtColor(image, code)
    return _normalise(image, path)


def read_vi(path: str | os.PathLike) -> np.ndarray:
    """Visible image as (H, W, 3) RGB float32 in [0, 1], or (H, W) when the file is grey."""
    path = Path(path)
    image = _read_raw(path)
    if image.ndim == 3:
        if image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return _normalise(image, path)


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of an image file, reading it fully (so broken files are caught)."""
    image = _read_raw(Path(path))
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


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write bytes to ``path`` so that readers see either the old file or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_text_if_changed(path: str | os.PathLike, text: str) -> None:
    """Atomic write, skipped when the file already holds exactly ``text``: a no-op rerun keeps the
    file's modification time, which later stages use to notice changed inputs."""
    path = Path(path)
    if not path.is_file() or path.read_text() != text:
        atomic_write_text(path, text)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
