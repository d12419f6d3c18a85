"""Class-index masks: reading them validated, writing them as palette PNGs.

A segmentation label is an image whose pixel values are class indices (0 .. n_classes - 1) plus one
ignore value (255 by default, the convention of mmsegmentation and most segmentation code). Datasets
ship them as grey PNGs, as palette ('P') PNGs whose pixel values are the indices (MFNet/MSRS), or as
colour PNGs that need the dataset's palette to be read. A wrong mask does not fail training: it
silently trains and scores a different task, so every way a file can look like a mask without being
one is refused here, with the file and the value named:

- a palette PNG is read as its indices, never as its colours (PIL keeps the indices; OpenCV would
  convert them to colours);
- a colour mask (channels that differ) needs a ``palette`` mapping colour -> index; a 3-channel mask
  whose channels are equal is a grey mask saved as RGB and is read as indices;
- a mask holding only 0 and 255 is a binary (salient-target) mask as some fusion repositories ship,
  not class indices, unless the classes themselves go up to 255;
- a value that is neither a class index nor the ignore value, and a mask of another size than its
  image, are errors.
"""
from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from fusionbench.errors import FusionBenchError
from fusionbench.files import atomic_write_bytes

IGNORE = 255
Colour = tuple[int, int, int]

# MFNet's classes and label colours, which MSRS (MFNet without its misaligned pairs) keeps.
MFNET_CLASSES = ("unlabelled", "car", "person", "bike", "curve", "car_stop", "guardrail", "color_cone", "bump")
MFNET_PALETTE: tuple[Colour, ...] = ((0, 0, 0), (64, 0, 128), (64, 64, 0), (0, 128, 192), (0, 0, 192),
                                     (128, 128, 0), (64, 64, 128), (192, 128, 128), (192, 64, 0))
IGNORE_COLOUR: Colour = (255, 255, 255)


class MaskError(FusionBenchError):
    """A mask file that cannot be used as class-index labels; the message names the file and value."""


def read_mask(path: str | os.PathLike, n_classes: int, ignore: int = IGNORE, size: tuple[int, int] | None = None,
              palette: Mapping[Colour, int] | None = None) -> np.ndarray:
    """The class indices (H, W) uint8 of a mask file, validated (see the module's docstring).

    ``size`` is the (height, width) of the image the mask labels; ``palette`` maps the colours of a
    colour mask to class indices (or to ``ignore``).
    """
    path = Path(path)
    _check_classes(n_classes, ignore)
    mask = _indices(_open(path), path, palette)
    if size is not None and mask.shape != tuple(size):
        raise MaskError(f"{path}: the mask is {mask.shape[0]}x{mask.shape[1]} (height x width) but its image is "
                        f"{size[0]}x{size[1]}")
    values = np.unique(mask)
    if n_classes < 255 and set(values.tolist()) == {0, 255}:
        raise MaskError(f"{path}: holds only the values 0 and 255: it looks like a binary (salient-target) mask, "
                        f"not class indices 0..{n_classes - 1}")
    bad = values[(values >= n_classes) & (values != ignore)]
    if bad.size:
        count = int(np.isin(mask, bad).sum())
        raise MaskError(f"{path}: value {int(bad[0])} ({count} pixels with values {_listed(bad)}) is neither a class "
                        f"index 0..{n_classes - 1} nor the ignore value {ignore}")
    return mask.astype(np.uint8)


def _check_classes(n_classes: int, ignore: int) -> None:
    if not 1 <= n_classes <= 255:
        raise MaskError(f"{n_classes} classes: class-index masks hold 1 to 255 classes")
    if not n_classes <= ignore <= 255:
        raise MaskError(f"ignore value {ignore}: it must be at least the class count {n_classes} and at most 255")


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _open(path: Path) -> Image.Image:
    """The mask as PIL reads it. Masks are PNG files: anything else is refused before PIL guesses a format (an
    imported ultralytics hooks PIL's opening of unidentified files to install a HEIF plugin)."""
    if not path.is_file():
        raise MaskError(f"{path}: mask file not found")
    with open(path, "rb") as handle:
        if handle.read(len(PNG_SIGNATURE)) != PNG_SIGNATURE:
            raise MaskError(f"{path}: not a readable mask image (not a PNG file; masks are class-index PNGs)")
    try:
        with Image.open(path) as image:
            image.load()  # decodes now: a truncated or corrupt file fails here, not later
            return image.copy()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise MaskError(f"{path}: not a readable mask image ({error})") from error


def _indices(image: Image.Image, path: Path, palette: Mapping[Colour, int] | None) -> np.ndarray:
    """Pixel values as integers: a palette image's indices, a grey image's values, a colour image
    mapped through ``palette`` (or read as grey where its channels are equal)."""
    if image.mode in ("P", "L", "I", "I;16", "1"):
        return np.asarray(image).astype(np.int64)
    if image.mode == "LA":
        return np.asarray(image)[..., 0].astype(np.int64)
    if image.mode not in ("RGB", "RGBA"):
        raise MaskError(f"{path}: image mode {image.mode} is not a mask (expected palette, grey or RGB)")
    rgb = np.asarray(image.convert("RGB")).astype(np.int64)
    if palette is not None:
        return _through_palette(rgb, palette, path)
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
        return rgb[..., 0]
    differing = rgb[(rgb[..., 0] != rgb[..., 1]) | (rgb[..., 0] != rgb[..., 2])][0]
    raise MaskError(f"{path}: a colour mask (e.g. colour {tuple(int(v) for v in differing)}) and no palette mapping "
                    "its colours to class indices: give the dataset's palette, or convert it to an index PNG")


def _through_palette(rgb: np.ndarray, palette: Mapping[Colour, int], path: Path) -> np.ndarray:
    packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    colours, inverse = np.unique(packed, return_inverse=True)
    known = {(r << 16) | (g << 8) | b: index for (r, g, b), index in palette.items()}
    missing = [int(c) for c in colours if int(c) not in known]
    if missing:
        first = missing[0]
        raise MaskError(f"{path}: colour {(first >> 16, (first >> 8) & 255, first & 255)} is not in the palette "
                        f"({len(missing)} unknown colours)")
    lookup = np.array([known[int(c)] for c in colours], np.int64)
    return lookup[inverse].reshape(packed.shape)


def _listed(values: np.ndarray, most: int = 5) -> str:
    shown = ", ".join(str(int(v)) for v in values[:most])
    return shown + (f", ... ({values.size} values)" if values.size > most else "")


def dataset_palette(classes: Sequence[str]) -> tuple[Colour, ...]:
    """The colours to draw ``classes`` in: MFNet's (MSRS's) for its nine classes, else a generated one."""
    if tuple(classes) == MFNET_CLASSES:
        return MFNET_PALETTE
    return generated_palette(len(classes))


def generated_palette(n_classes: int) -> tuple[Colour, ...]:
    """Distinct colours for class indices, index 0 black: the bits of the index spread over the high
    bits of red, green and blue (the scheme PASCAL VOC's label colours follow), so neighbours differ."""
    colours = []
    for index in range(n_classes):
        r = g = b = 0
        for bit in range(8):
            r |= ((index >> (3 * bit)) & 1) << (7 - bit)
            g |= ((index >> (3 * bit + 1)) & 1) << (7 - bit)
            b |= ((index >> (3 * bit + 2)) & 1) << (7 - bit)
        colours.append((r, g, b))
    return tuple(colours)


def write_index_png(path: str | os.PathLike, mask: np.ndarray, palette: Sequence[Colour]) -> None:
    """Write class indices (H, W) as a palette PNG (atomically): its pixel values are the indices, and
    viewers show them in ``palette``'s colours (the ignore value 255 in white unless given)."""
    path = Path(path)
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.dtype != np.uint8:
        raise MaskError(f"{path}: a mask to write must be (H, W) uint8 class indices, got {mask.shape} {mask.dtype}")
    values = np.unique(mask)
    uncoloured = values[(values >= len(palette)) & (values != IGNORE)]
    if uncoloured.size:
        raise MaskError(f"{path}: class index {int(uncoloured[0])} has no colour in the {len(palette)}-colour palette")
    entries = [*palette, *[(0, 0, 0)] * (256 - len(palette))][:256]
    if len(palette) <= IGNORE:
        entries[IGNORE] = IGNORE_COLOUR
    image = Image.frombytes("P", (mask.shape[1], mask.shape[0]), np.ascontiguousarray(mask).tobytes())
    image.putpalette([channel for colour in entries for channel in colour])
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())
