"""Fusing images with a trained S4Fusion model: the API the rest of the project calls.

    fuser = S4FusionFuser.from_checkpoint("model.pkl")        # project checkpoint or authors' file
    rgb = fuser(ir, vi)                                        # uint8 (H, W, 3)
    rgbs = fuser.fuse_batch([(ir1, vi1), (ir2, vi2)])          # same-size pairs run as one batch

Inputs may be float arrays in [0, 1], uint8 / uint16 arrays, PIL images or tensors, of any size:
they are reflect-padded to the next valid size and the output cropped back. The fused luminance
replaces the visible Y; the visible chroma is kept (BT.601, :func:`fusion.color.recolor`).
"""
from __future__ import annotations

import contextlib
import os
from collections import defaultdict
from typing import Any, Iterable

import numpy as np
import torch

from fusion.color import luminance, recolor
from fusion.s4fusion.checkpoint import load_model
from fusion.s4fusion.geometry import crop_back, pad_to_valid
from fusion.s4fusion.model import S4Fusion

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


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
        raise ValueError(f"{name}: expected an (H, W) or (H, W, 3) image, got shape {image.shape}")
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535.0
    if image.dtype == np.int32:  # PIL's 32-bit integer mode "I" holds 16-bit grey values
        if image.min() < 0 or image.max() > 65535:
            raise ValueError(f"{name}: integer image outside the 16-bit range")
        return image.astype(np.float32) / 65535.0
    if not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f"{name}: unsupported pixel type {image.dtype}")
    image = image.astype(np.float32)
    if not np.isfinite(image).all() or image.min() < -1e-6 or image.max() > 1 + 1e-6:
        raise ValueError(f"{name}: float images must lie in [0, 1] (got {image.min():.4g}..{image.max():.4g})")
    return np.clip(image, 0.0, 1.0)


class S4FusionFuser:
    """Runs an S4Fusion model on image pairs: padding, batching, device, precision and colour."""

    def __init__(self, model: S4Fusion, device: str | torch.device = "auto", amp: str | None = None,
                 max_batch: int | None = None):
        """``max_batch``: same-size pairs per forward pass; by default 8 on CUDA and 1 on the CPU, where
        batching gains no speed and multiplies the peak memory (~1.5 GB per 1024x768 pair)."""
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if amp is not None and (amp not in AMP_DTYPES or self.device.type != "cuda"):
            raise ValueError(f"amp must be None or one of {sorted(AMP_DTYPES)} on a CUDA device; got {amp!r} on {self.device}")
        self.amp = amp
        self.max_batch = max_batch or (8 if self.device.type == "cuda" else 1)
        self.model = model.to(self.device).eval()

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str | torch.device = "auto",
                        amp: str | None = None, max_batch: int | None = None) -> "S4FusionFuser":
        """Build from a project checkpoint or the authors' model.pkl."""
        return cls(load_model(path), device=device, amp=amp, max_batch=max_batch)

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
        both, size = pad_to_valid(torch.cat((ir, y)).to(self.device), self.model.config.merges)
        ir, y = both.chunk(2)
        autocast = (torch.autocast("cuda", dtype=AMP_DTYPES[self.amp]) if self.amp else contextlib.nullcontext())
        with autocast:
            fused = self.model(ir, y)
        return crop_back(fused.float().clamp(0, 1), size)[:, 0].cpu().numpy()

    @staticmethod
    def _prepare(index: int, ir: Any, vi: Any) -> tuple[np.ndarray, np.ndarray]:
        ir = to_float_image(ir, f"pair {index}: infrared")
        vi = to_float_image(vi, f"pair {index}: visible")
        ir = luminance(ir) if ir.ndim == 3 else ir
        if ir.shape != vi.shape[:2]:
            raise ValueError(f"pair {index}: infrared {ir.shape} and visible {vi.shape[:2]} sizes differ")
        return ir, vi
