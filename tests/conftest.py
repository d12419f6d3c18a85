"""Shared test fixtures: the real MSRS pairs in ../shared (skipped cleanly when absent)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest

# No test may reach the network: ultralytics reads these before it is imported anywhere.
os.environ.setdefault("YOLO_OFFLINE", "1")
# torch's and numba's OpenMP pools otherwise spin-wait against each other between calls (each idle
# pool burns CPU for a while); on 2 cores that made every small selective-scan call ~15x slower.
# Read once when libgomp loads, so it must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# The tests run the Triton selective scan on CPU tensors, in Triton's interpreter. Triton reads this
# when its language module and each kernel are defined, and torchvision imports triton: so here.
os.environ.setdefault("TRITON_INTERPRET", "1")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared is not present")
    return SHARED


@pytest.fixture(scope="session")
def shared_path(shared_dir: Path) -> Callable[[str], Path]:
    """``shared_path("data/x")``: that file or folder of ../shared, or the test is skipped cleanly."""
    def find(relative: str) -> Path:
        path = shared_dir / relative
        if not path.exists():
            pytest.skip(f"{path} is not present")
        return path
    return find


@pytest.fixture(scope="session")
def msrs_det20(shared_path: Callable[[str], Path]) -> Path:
    return shared_path("data/msrs_det20")


@pytest.fixture(scope="session")
def parity_fixture(shared_path: Callable[[str], Path]) -> Path:
    return shared_path("fixtures/s4fusion_released_parity.pt")


@pytest.fixture(scope="session")
def msrs_benchmark(msrs_det20: Path, tmp_path_factory: pytest.TempPathFactory):
    """The 20 real MSRS pairs prepared as a benchmark (msrs layout, seed 0, 14/2/4), built once."""
    from pipelines.prepare import prepare_benchmark

    return prepare_benchmark(msrs_det20, tmp_path_factory.mktemp("msrs") / "benchmark", layout="msrs")


@pytest.fixture(scope="session")
def sample_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic raw dataset in the M3FD layout: 24 pairs at 128x96, seed 0."""
    from pipelines.sample import make_sample

    return make_sample(tmp_path_factory.mktemp("sample") / "raw", pairs=24, width=128, height=96, seed=0)


@pytest.fixture(scope="session")
def sample_benchmark(sample_raw: Path, tmp_path_factory: pytest.TempPathFactory):
    """``sample_raw`` prepared as a benchmark (random split, seed 0: 17/2/5 pairs)."""
    from pipelines.prepare import prepare_benchmark

    return prepare_benchmark(sample_raw, tmp_path_factory.mktemp("sample") / "benchmark")


@pytest.fixture(scope="session")
def slurm() -> str:
    """A running SLURM that this machine submits to (``scripts/slurm_local.sh up``, as ``.ci/run`` does).
    Under CI=true its absence fails the run: the SLURM tests are the executor's only real test."""
    import shutil
    import subprocess

    problem = None
    if shutil.which("sbatch") is None:
        problem = "sbatch not found (apt-get install slurmctld slurmd slurm-client munge; scripts/slurm_local.sh up)"
    else:
        probe = subprocess.run(["sinfo", "-h", "-o", "%t %G"], capture_output=True, text=True, timeout=30)
        if probe.returncode or not probe.stdout.strip():
            problem = f"no SLURM answers (scripts/slurm_local.sh up): {probe.stderr.strip() or 'sinfo: no nodes'}"
        elif "gpu" not in probe.stdout:
            problem = f"the SLURM here has no GPUs (real or fake) in its nodes: {probe.stdout.strip()}"
    if problem and os.environ.get("CI") == "true":
        pytest.fail(f"CI=true needs a SLURM to test against: {problem}")
    if problem:
        pytest.skip(problem)
    return os.environ.get("SLURM_CONF", "")
