"""Which software made a file: the versions recorded in manifests and reports, so that a result
can be traced to the code and libraries that produced it."""
from __future__ import annotations

import platform
from importlib import metadata
from typing import Iterable


def package_versions(packages: Iterable[str], missing: str | None = None) -> dict[str, str]:
    """Python's version and each package's installed version; a package that is not installed
    maps to ``missing``, or is left out where ``missing`` is None."""
    found = {"python": platform.python_version()}
    for package in packages:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            if missing is not None:
                found[package] = missing
    return found


def numerics_provenance() -> dict[str, object]:
    """What moves GPU numbers without any change of code, weights or versions: the selected scan
    backend, the one CUDA tensors get (None without CUDA), mamba-ssm's kernel state ('loaded',
    'broken', 'absent'), and TF32 for matmuls and cuDNN convolutions (on by default for the
    latter, which moves GPU fusion ~1e-3 away from the CPU's)."""
    import torch

    from fusion import _scan_mamba, scan

    cuda_backend = None
    if torch.cuda.is_available():
        try:
            cuda_backend = scan.backend_for("cuda")
        except scan.ScanBackendError as error:
            cuda_backend = f"unavailable: {error}"
    return {"scan_backend": scan.scan_backend(), "scan_backend_cuda": cuda_backend,
            "mamba_kernel": _scan_mamba.load_kernel().state,
            "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
            "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32)}
