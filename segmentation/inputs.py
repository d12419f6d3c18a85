"""Image files as segmenter inputs: colour, normalisation and size, recorded with the weights.

Two choices change published mIoU and users ask which was made (``../shared/TASKS.md``), so both are
explicit and stored with every trained segmenter (:class:`Preprocessing`):
- **colour**: ``colour`` feeds the image as stored (a fused set that kept the visible chroma is RGB; a
  grey file is repeated to three channels); ``grey`` feeds its luminance (ITU-R BT.601 Y, the Y of
  YCbCr that fusion methods fuse) repeated to three channels;
- **normalisation**: ``imagenet`` subtracts ImageNet's fixed mean and divides by its std (what the
  pre-trained encoder saw); ``per_method`` uses the mean and std of that fused set's own training
  images, as PSFusion does.
Images are resized to ``imgsz`` x ``imgsz`` (bilinear; masks nearest); predictions are resized back.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from PIL import Image

from fusionbench.errors import FusionBenchError
from fusionbench.images import ImageError, read_vi

COLOURS = ("colour", "grey")
NORMALISATIONS = ("imagenet", "per_method")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LUMINANCE = np.array([0.299, 0.587, 0.114], np.float32)


class InputError(FusionBenchError):
    """Preprocessing that cannot be applied; the message names the value."""


@dataclass(frozen=True)
class Preprocessing:
    """How an image file becomes the network's input: channel order RGB, values in [0, 1] before
    ``(x - mean) / std``."""

    imgsz: int
    colour: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __post_init__(self) -> None:
        if self.colour not in COLOURS:
            raise InputError(f"colour {self.colour!r}: expected one of {', '.join(COLOURS)}")
        if self.imgsz < 32 or self.imgsz % 32:
            raise InputError(f"input size {self.imgsz}: SegFormer needs a multiple of 32")


def image_shape(path: str | os.PathLike) -> tuple[int, int]:
    """(height, width) from the image file's header (a mask must have it)."""
    try:
        with Image.open(path) as opened:
            return opened.height, opened.width
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"{path}: not a readable image ({error})") from error


def read_input(path: str | os.PathLike, colour: str) -> np.ndarray:
    """(H, W, 3) float32 RGB in [0, 1] as the segmenter sees it (see the module's docstring)."""
    image = read_vi(path)
    if image.ndim == 2:
        image = image[..., None]
    elif colour == "grey":
        image = (image @ LUMINANCE)[..., None]
    return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image


def channel_statistics(paths: Sequence[str | os.PathLike], colour: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std over every pixel of ``paths`` (float64 sums): a fused set's own statistics."""
    total, squares, count = np.zeros(3), np.zeros(3), 0
    for path in paths:
        image = read_input(path, colour).reshape(-1, 3).astype(np.float64)
        total += image.sum(axis=0)
        squares += (image * image).sum(axis=0)
        count += image.shape[0]
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean * mean, 0.0))
    return tuple(float(v) for v in mean), tuple(float(max(v, 1e-6)) for v in std)


def to_tensor(image: np.ndarray, preprocessing: Preprocessing) -> torch.Tensor:
    """(3, imgsz, imgsz) float32 network input from an (H, W, 3) image in [0, 1]."""
    size = (preprocessing.imgsz, preprocessing.imgsz)
    resized = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR) if image.shape[:2] != size else image
    mean, std = np.array(preprocessing.mean, np.float32), np.array(preprocessing.std, np.float32)
    return torch.from_numpy(np.ascontiguousarray(((resized - mean) / std).transpose(2, 0, 1)))


def resize_mask(mask: np.ndarray, imgsz: int) -> np.ndarray:
    """Class indices at the network's input size (nearest neighbour: no invented classes)."""
    if mask.shape == (imgsz, imgsz):
        return mask
    return cv2.resize(mask, (imgsz, imgsz), interpolation=cv2.INTER_NEAREST)
