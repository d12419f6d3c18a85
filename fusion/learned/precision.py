"""Mixed precision: which autocast dtype a device gets.

``None`` (automatic): on CUDA, bf16 where the GPU computes in it natively (compute capability 8.0,
Ampere, and newer), fp16 with loss scaling on Volta/Turing (7.x, tensor cores), none on older GPUs;
off on the CPU. An explicit "bf16" / "fp16" / "none" is taken as given.
"""
from __future__ import annotations

import torch

from fusionbench.errors import FusionBenchError

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
AMP_CHOICES = (*AMP_DTYPES, "none")


class PrecisionError(FusionBenchError, ValueError):
    """An unknown mixed-precision choice."""


def automatic_amp(device: torch.device) -> str:
    """The automatic choice for ``device`` (see the module docstring)."""
    if device.type != "cuda":
        return "none"
    major, _ = torch.cuda.get_device_capability(device)
    return "bf16" if major >= 8 else "fp16" if major >= 7 else "none"


def amp_dtype(choice: str | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``choice`` on ``device`` (None: no autocast)."""
    choice = automatic_amp(device) if choice is None else choice
    if choice not in AMP_CHOICES:
        raise PrecisionError(f"mixed precision {choice!r}: expected one of {', '.join(AMP_CHOICES)} or null (automatic)")
    return AMP_DTYPES.get(choice)
