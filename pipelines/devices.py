"""``run.device`` as a torch device, the same way for every stage."""
from __future__ import annotations

import torch

from fusion.scan import ScanBackendError, backend_for, set_scan_backend
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


def apply_scan_backend(config: Config, device: torch.device) -> str:
    """Select ``fusion.scan_backend`` for this process and check, before any work, that it can scan
    on ``device`` (a broken mamba-ssm install stops here); returns the backend that will scan."""
    set_scan_backend(config.fusion.scan_backend)
    try:
        return backend_for(device)
    except ScanBackendError as error:
        raise ScanBackendError(f"fusion.scan_backend={config.fusion.scan_backend} on {device}: {error}") from error
