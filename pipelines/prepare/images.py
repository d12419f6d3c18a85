"""Reading every image of a pair once: checks, file hashes and a tiny thumbnail.

Checks beyond decoding (each an :class:`ImageError` naming the file):

- both images at least :data:`MIN_SIDE` pixels on each side: YOLOv5's coarsest output stride is 32
  pixels, so a smaller image has no detection cell, and the fusion metrics' windows do not fit;
- no EXIF orientation other than "normal" (1). The tag is *refused*, not applied: OpenCV, PIL and
  ultralytics disagree on whether to honour it, so an IR/VI pair (and its boxes) would be aligned
  in one tool and rotated against each other in another. Rewrite such an image upright, without the tag;
- an infrared image stored as colour (M3FD stores its IR as 24-bit RGB) must have equal channels:
  a false-colour palette or a visible image in the infrared folder is refused rather than averaged.

The thumbnail (IR and VI grey, downscaled to :data:`THUMB_SIZE`) is what scene grouping and the
near-duplicate leakage count compare; keeping it here means each file is decoded exactly once.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from fusionbench.files import sha256_file
from fusionbench.images import ImageError, read_ir, read_vi

THUMB_SIZE = (32, 24)   # (width, height)
MIN_SIDE = 32           # pixels; see the module docstring
EXIF_ORIENTATION = 0x0112
PNG_EXIF_CHUNK = b"eXIf"
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


@dataclass(frozen=True)
class PairImages:
    width: int
    height: int
    ir_sha256: str
    vi_sha256: str
    thumbnail: np.ndarray   # float32, IR thumbnail then VI thumbnail, flattened


def inspect_pair(ir_path: Path, vi_path: Path) -> PairImages:
    """Decode both images (broken or truncated files raise :class:`ImageError` naming the file)
    and check them (module docstring)."""
    ir = read_ir(ir_path)
    vi = read_vi(vi_path)
    if ir.shape[:2] != vi.shape[:2]:
        raise ImageError(f"{ir_path}: infrared is {ir.shape[1]}x{ir.shape[0]} but the visible image "
                         f"{vi_path.name} is {vi.shape[1]}x{vi.shape[0]}")
    if min(ir.shape[:2]) < MIN_SIDE:
        raise ImageError(f"{ir_path}: {ir.shape[1]}x{ir.shape[0]} pixels, smaller than the minimum "
                         f"{MIN_SIDE}x{MIN_SIDE} (YOLOv5's coarsest stride is {MIN_SIDE} px: no detection cell fits)")
    ir_mode = _check_header(ir_path)
    _check_header(vi_path)
    if ir_mode not in GREY_MODES:
        _check_grey_channels(ir_path)
    vi_grey = cv2.cvtColor(vi, cv2.COLOR_RGB2GRAY) if vi.ndim == 3 else vi
    thumbnail = np.concatenate([_thumb(ir), _thumb(vi_grey)])
    return PairImages(int(ir.shape[1]), int(ir.shape[0]), sha256_file(ir_path), sha256_file(vi_path), thumbnail)


def _check_header(path: Path) -> str:
    """Refuse an EXIF orientation other than normal; return PIL's pixel mode (header only)."""
    try:
        with Image.open(path) as image:
            mode = image.mode
            # PIL decodes a whole PNG to look for an eXIf chunk after the pixels: look for the chunk first
            tagged = image.format != "PNG" or "exif" in image.info or PNG_EXIF_CHUNK in _png_chunk_types(path)
            orientation = image.getexif().get(EXIF_ORIENTATION, 1) if tagged else 1
    except (OSError, ValueError) as error:
        raise ImageError(f"{path}: image header not readable ({error})") from error
    if orientation != 1:
        raise ImageError(f"{path}: EXIF orientation {orientation} (rotated or mirrored) is not supported: tools "
                         f"disagree on applying it, so the pair and its boxes could be misaligned; "
                         f"save the image upright without the orientation tag")
    return mode


def _png_chunk_types(path: Path) -> set[bytes]:
    """The chunk types of a PNG file, read from the chunk headers only (seeking over the data)."""
    types = set()
    with open(path, "rb") as handle:
        handle.seek(8)
        while len(header := handle.read(8)) == 8:
            length, kind = int.from_bytes(header[:4], "big"), header[4:]
            types.add(kind)
            if kind == b"IEND":
                break
            handle.seek(length + 4, 1)
    return types


def _check_grey_channels(path: Path) -> None:
    raw = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.ndim == 2:
        return
    colour = raw[..., :3].astype(np.int64)
    spread = int((colour.max(axis=2) - colour.min(axis=2)).max())
    if spread:
        raise ImageError(f"{path}: infrared image stored as colour whose channels differ (by up to {spread} "
                         f"levels): not a grey infrared image (false-colour palette, or a visible image "
                         f"in the infrared folder?)")


def _thumb(grey: np.ndarray) -> np.ndarray:
    return cv2.resize(grey, THUMB_SIZE, interpolation=cv2.INTER_AREA).ravel()
