"""Fusing images with a trained learned fuser: the API the rest of the project calls.

    fuser = LearnedFuser.from_checkpoint("best.pt")            # any registered architecture's file
    rgb = fuser(ir, vi)                                        # uint8 (H, W, 3)
    rgbs = fuser.fuse_batch([(ir1, vi1), (ir2, vi2)])          # same-size pairs run as one batch

Inputs may be float arrays in [0, 1], uint8 / uint16 arrays, PIL images or tensors, of any size:
they are reflect-padded to the architecture's next valid size and the output cropped back. The
network's fused luminance is clipped to [0, 1] (``output="clamp"``) or min-max normalised per image
(``output="minmax"``, SMFNet's released test code), replaces the visible Y, and the visible chroma is
kept (BT.601, :func:`fusion.color.recolor`).
"""
from __future__ import annotations

import contextlib
import os
from collections import defaultdict
from typing import Any, Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fusion.color import luminance, recolor
from fusion.learned.architecture import Architecture
from fusion.learned.checkpoint import load_checkpoint
from fusion.learned.precision import AMP_DTYPES
from fusionbench.errors import FusionBenchError

OUTPUTS = ("clamp", "minmax")


class InferenceError(FusionBenchError, ValueError):
    """Inference options or inputs a learned fuser cannot use."""


def to_float_image(image: Any, name: str = "image") -> np.ndarray:
    """PIL image, tensor or array -> float32 (H, W) or (H, W, 3) in [0, 1].

    uint8 is divided by 255 and uint16 by 65535; float input must already lie in [0, 1].
    Tensors may be channels-first ((1|3), H, W).
    """
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu()
        if image.dim() == 3 and image.shape[0] in (1, 3) and image.shape[-1] not in (1, 3):
            image = image.permute(1, 2, 0)
        image = image.numpy()
    elif not isinstance(image, np.ndarray):
        image = np.asarray(image)  # PIL images (modes L, I;16, RGB, ...) convert here
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] != 3):
        raise InferenceError(f"{name}: expected an (H, W) or (H, W, 3) image, got shape {image.shape}")
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535.0
    if image.dtype == np.int32:  # PIL's 32-bit integer mode "I" holds 16-bit grey values
        if image.min() < 0 or image.max() > 65535:
            raise InferenceError(f"{name}: integer image outside the 16-bit range")
        return image.astype(np.float32) / 65535.0
    if not np.issubdtype(image.dtype, np.floating):
        raise InferenceError(f"{name}: unsupported pixel type {image.dtype}")
    image = image.astype(np.float32)
    if not np.isfinite(image).all() or image.min() < -1e-6 or image.max() > 1 + 1e-6:
        raise InferenceError(f"{name}: float images must lie in [0, 1] (got {image.min():.4g}..{image.max():.4g})")
    return np.clip(image, 0.0, 1.0)


def pad_to_valid(x: torch.Tensor, next_valid: Callable[[int], int]) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad (B, C, H, W) on the bottom/right to ``next_valid(H)`` x ``next_valid(W)``; returns the padded
    tensor and (H, W). Reflection needs the pad to be smaller than the side, so small images are padded in steps."""
    height, width = x.shape[-2:]
    if min(height, width) < 2:
        raise InferenceError(f"image of {height}x{width} pixels is too small to fuse (need at least 2x2)")
    target_h, target_w = next_valid(height), next_valid(width)
    while x.shape[-2] < target_h or x.shape[-1] < target_w:
        pad_h = min(target_h - x.shape[-2], x.shape[-2] - 1)
        pad_w = min(target_w - x.shape[-1], x.shape[-1] - 1)
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
    return x, (height, width)


def crop_back(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Undo :func:`pad_to_valid` on the network output."""
    return x[..., : size[0], : size[1]]


def min_max(y: torch.Tensor) -> torch.Tensor:
    """Per-image min-max normalisation of (B, 1, H, W) to [0, 1] (a constant image becomes 0)."""
    low = y.flatten(1).min(dim=1).values.view(-1, 1, 1, 1)
    high = y.flatten(1).max(dim=1).values.view(-1, 1, 1, 1)
    return (y - low) / (high - low).clamp_min(torch.finfo(y.dtype).tiny)


class LearnedFuser:
    """Runs a learned fuser's model on image pairs: padding, batching, device, precision and colour."""

    def __init__(self, model: nn.Module, arch: Architecture, config: Any, device: str | torch.device = "auto",
                 amp: str | None = None, max_batch: int | None = None, output: str = "clamp"):
        """``max_batch``: same-size pairs per forward pass; by default 8 on CUDA and 1 on the CPU, where
        batching gains no speed and multiplies the peak memory. ``output``: "clamp" or "minmax" (see the
        module docstring)."""
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if amp is not None and (amp not in AMP_DTYPES or self.device.type != "cuda"):
            raise InferenceError(f"mixed precision must be None or one of {sorted(AMP_DTYPES)} on a CUDA device; "
                                 f"got {amp!r} on {self.device}")
        if output not in OUTPUTS:
            raise InferenceError(f"output {output!r}: expected one of {', '.join(OUTPUTS)}")
        self.arch, self.config, self.amp, self.output = arch, config, amp, output
        self.max_batch = max_batch or (8 if self.device.type == "cuda" else 1)
        self.model = model.to(self.device).eval()

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str | torch.device = "auto", amp: str | None = None,
                        max_batch: int | None = None, output: str = "clamp") -> "LearnedFuser":
        """Build from a project checkpoint or any layout a registered converter reads."""
        model, config, arch, _ = load_checkpoint(path)
        return cls(model, arch, config, device=device, amp=amp, max_batch=max_batch, output=output)

    def __call__(self, ir: Any, vi: Any) -> np.ndarray:
        """One pair -> uint8 RGB (H, W, 3) (grey replicated when the visible image is grey)."""
        return self.fuse_batch([(ir, vi)])[0]

    def fuse_batch(self, pairs: Iterable[tuple[Any, Any]]) -> list[np.ndarray]:
        """Pairs -> uint8 RGB images in the same order; pairs of one size share a forward pass."""
        images = [self._prepare(i, ir, vi) for i, (ir, vi) in enumerate(pairs)]
        fused_y = self.fuse_luminance([(ir, luminance(vi)) for ir, vi in images])
        return [recolor(y, vi) for y, (_, vi) in zip(fused_y, images)]

    def fuse_luminance(self, pairs: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        """(IR, visible Y) float32 (H, W) pairs -> fused luminance float32 (H, W) in [0, 1]."""
        by_size: dict[tuple[int, int], list[int]] = defaultdict(list)
        for index, (ir, _) in enumerate(pairs):
            by_size[ir.shape].append(index)
        results: list[np.ndarray | None] = [None] * len(pairs)
        for indices in by_size.values():
            for start in range(0, len(indices), self.max_batch):
                chunk = indices[start:start + self.max_batch]
                ir = torch.from_numpy(np.stack([pairs[i][0] for i in chunk]))[:, None]
                y = torch.from_numpy(np.stack([pairs[i][1] for i in chunk]))[:, None]
                for i, fused in zip(chunk, self._run(ir, y)):
                    results[i] = fused
        return results

    @torch.inference_mode()
    def _run(self, ir: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        """(B, 1, H, W) CPU tensors of any size -> (B, H, W) float32 numpy fused luminance."""
        both, size = pad_to_valid(torch.cat((ir, y)).to(self.device), lambda s: self.arch.next_valid_size(self.config, s))
        ir, y = both.chunk(2)
        autocast = (torch.autocast("cuda", dtype=AMP_DTYPES[self.amp]) if self.amp else contextlib.nullcontext())
        with autocast:
            fused = self.model(ir, y)
        fused = crop_back(fused.float(), size)
        fused = min_max(fused) if self.output == "minmax" else fused.clamp(0, 1)
        return fused[:, 0].cpu().numpy()

    @staticmethod
    def _prepare(index: int, ir: Any, vi: Any) -> tuple[np.ndarray, np.ndarray]:
        ir = to_float_image(ir, f"pair {index}: infrared")
        vi = to_float_image(vi, f"pair {index}: visible")
        ir = luminance(ir) if ir.ndim == 3 else ir
        if ir.shape != vi.shape[:2]:
            raise InferenceError(f"pair {index}: infrared {ir.shape} and visible {vi.shape[:2]} sizes differ")
        return ir, vi
