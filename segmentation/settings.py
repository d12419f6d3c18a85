"""The settings of one segmenter's training and prediction, validated when made."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from fusionbench.errors import FusionBenchError
from segmentation.inputs import COLOURS, NORMALISATIONS
from segmentation.masks import IGNORE

SPEED_ONLY = ("workers", "device")  # change how fast, not what is trained


class SegmenterError(FusionBenchError):
    """A segmenter that cannot be built, trained or used as asked; the message names the file or value."""


@dataclass(frozen=True)
class SegmenterSettings:
    """Everything that decides a trained segmenter (``workers`` and ``device`` only decide speed)."""

    model: str = "segformer_b0"
    epochs: int = 100
    imgsz: int = 512
    batch: int = 8
    lr: float = 1e-4
    weight_decay: float = 1e-2
    workers: int = 0
    seed: int = 0
    eval_every: int = 5
    device: str = "auto"  # "auto": CUDA when available, else CPU
    weights: str | None = None  # local pre-trained weights (file or folder)
    allow_random: bool = False  # start from random weights when none are given (logged)
    normalisation: str = "imagenet"  # or "per_method": the training images' own mean and std
    colour: str = "colour"  # or "grey": luminance repeated to three channels
    ignore: int = IGNORE

    def __post_init__(self) -> None:
        if self.normalisation not in NORMALISATIONS:
            raise SegmenterError(f"normalisation {self.normalisation!r}: expected one of {', '.join(NORMALISATIONS)}")
        if self.colour not in COLOURS:
            raise SegmenterError(f"colour {self.colour!r}: expected one of {', '.join(COLOURS)}")
        for name in ("epochs", "batch", "eval_every", "imgsz"):
            if getattr(self, name) < 1:
                raise SegmenterError(f"{name} {getattr(self, name)}: must be at least 1")

    def deciding(self) -> dict:
        """The settings that decide the trained weights: a resumed run must share them."""
        return {name: value for name, value in dataclasses.asdict(self).items() if name not in SPEED_ONLY}


def device_of(name: str) -> torch.device:
    """``auto``: CUDA when available, else CPU; any other name as torch reads it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
