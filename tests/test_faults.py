"""Fault handling: file modes under the umask, worker processes dying with their parent, a damaged
detector checkpoint, and a full disk or other OSError reported as one line per method."""
from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from fusion.io import atomic_write_text, write_image


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_atomic_writes_respect_the_umask(tmp_path: Path, umask: int):
    """Observation 10: every file was 0600 whatever the umask (mkstemp)."""
    before = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
        write_image(tmp_path / "b.png", np.zeros((4, 4), "uint8"))
        reference = tmp_path / "reference"
        reference.write_text("{}")  # what a plain open() makes under this umask
    finally:
        os.umask(before)
    expected = stat.S_IMODE(reference.stat().st_mode)
    assert expected == 0o666 & ~umask
    for name in ("a.json", "b.png"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.png", "reference"]  # no temporaries left


SLOW_FUSER = '''
import os, time
from pathlib import Path

class SlowFuser:
    """Marks that a worker is busy, then fuses for ten minutes."""

    def __init__(self, folder):
        self.folder = folder

    def __call__(self, ir, vi):
        Path(self.folder, str(os.getpid())).touch()
        time.sleep(600)
'''


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc (Linux)")
def test_fuse_workers_die_when_fuse_is_killed(sample_benchmark, tmp_path: Path):
    """Observation 8: after `kill -9` of fuse its worker processes stayed alive under PID 1."""
    busy = tmp_path / "busy"
    busy.mkdir()
    (tmp_path / "slow_fuser.py").write_text(SLOW_FUSER)
    bench = tmp_path / "benchmark"
    shutil.copytree(sample_benchmark.root, bench, ignore=shutil.ignore_patterns("fused"))
    script = textwrap.dedent(f"""
        from pipelines.benchmark import Benchmark
        from pipelines.fuse import FuseJob
        from slow_fuser import SlowFuser
        job = FuseJob(Benchmark({str(bench)!r}), "slow", SlowFuser({str(busy)!r}), fingerprint={{"method": "slow"}})
        for outcome in job.run(workers=2):
            pass
    """)
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": f"{repo}{os.pathsep}{tmp_path}"}
    parent = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        deadline = time.monotonic() + 120
        while len(list(busy.iterdir())) < 2 and parent.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        workers = [int(p.name) for p in busy.iterdir()]
        assert len(workers) == 2 and all(_alive(pid) for pid in workers)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    survivors = [pid for pid in workers if _alive(pid)]
    for pid in survivors:  # leave no process behind even when the test fails
        os.kill(pid, signal.SIGKILL)
    assert survivors == []
