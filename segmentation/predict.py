"""Class-index predictions of a trained segmenter, at each image's own size.

The network sees every image at its training input size; its logits are resized back to the image's
size (bilinear) before the arg-max, so predictions and ground-truth masks are compared pixel for pixel.
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from segmentation.inputs import Preprocessing, read_input, to_tensor
from segmentation.segformer import network
from segmentation.settings import SegmenterError, SegmenterSettings, device_of


def predict(weights: str | os.PathLike, images: Sequence[str | os.PathLike],
            settings: SegmenterSettings) -> Iterator[tuple[str, np.ndarray]]:
    """(stem, (H, W) uint8 class indices) per image, from a ``best.pt`` that training wrote: its
    architecture, classes and preprocessing come from the file; ``settings`` gives device and batch."""
    weights = Path(weights)
    if not weights.is_file():
        raise SegmenterError(f"{weights}: trained segmenter weights not found")
    try:
        saved = torch.load(weights, map_location="cpu", weights_only=True)
        model = network(saved["architecture"], len(saved["classes"]))
        model.load_state_dict(saved["model"])
        preprocessing = Preprocessing(**saved["preprocessing"])
    except (OSError, RuntimeError, KeyError, TypeError, ValueError, EOFError) as error:
        raise SegmenterError(f"{weights}: not a trained segmenter written by this project "
                             f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})") from error
    device = device_of(settings.device)
    yield from segment(model.to(device), images, preprocessing, device, settings.batch)


def segment(model: torch.nn.Module, images: Sequence[str | os.PathLike], preprocessing: Preprocessing,
            device: torch.device, batch: int) -> Iterator[tuple[str, np.ndarray]]:
    """(stem, class indices at the image's size) per image, ``batch`` images per forward pass."""
    model.eval()
    with torch.no_grad():
        for start in range(0, len(images), batch):
            chunk = images[start:start + batch]
            arrays = [read_input(path, preprocessing.colour) for path in chunk]
            logits = model(torch.stack([to_tensor(array, preprocessing) for array in arrays]).to(device))
            for path, array, logit in zip(chunk, arrays, logits):
                resized = F.interpolate(logit[None], size=array.shape[:2], mode="bilinear", align_corners=False)
                yield Path(path).stem, resized[0].argmax(dim=0).to(torch.uint8).cpu().numpy()
