"""``run.device`` as a torch device, the same way for every stage."""
from __future__ import annotations

import torch

from pipelines.schema import Config


def torch_device(config: Config) -> torch.device:
    """``run.device``: auto (CUDA when available), cpu, cuda[:n], or GPU indices as ultralytics takes
    them (``0`` or ``0,1``; a list means its first GPU here: spread a stage over GPUs with
    ``--shard i/n`` and CUDA_VISIBLE_DEVICES, or torchrun for training)."""
    wanted = config.run.device.strip()
    if wanted == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    first = wanted.split(",")[0].strip()
    return torch.device(f"cuda:{first}" if first.isdigit() else first)
