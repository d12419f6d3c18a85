"""Fault handling: worker processes dying with their parent, and a full disk or other OSError
reported as one line per method."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

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
