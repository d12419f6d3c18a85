"""Fault handling: worker processes dying with their parent, and a full disk or other OSError
reported as one line per method."""
from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipelines.cli import cli

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
        from fusionbench.benchmark import Benchmark
        from fusion.engine import FuseJob
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


@pytest.fixture()
def full_disk(tmp_path: Path):
    """A 64 KiB tmpfs (root only): room for a few small files, then ENOSPC."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "small_disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def test_a_full_disk_is_one_line_per_method_and_the_other_methods_go_on(sample_benchmark, tmp_path: Path,
                                                                        full_disk: Path):
    """Observation 9: a full disk was a raw `OSError: [Errno 28]` traceback naming no file, and `fuse`
    abandoned the other methods."""
    bench = tmp_path / "benchmark"
    shutil.copytree(sample_benchmark.root, bench, ignore=shutil.ignore_patterns("fused"))
    (bench / "fused").symlink_to(full_disk, target_is_directory=True)  # the fused sets land on the full disk
    args = ["-s", f"data.benchmark={bench}", "-s", f"run.root={tmp_path / 'runs'}", "-s", "fusion.workers=1"]
    try:
        result = CliRunner().invoke(cli, ["fuse", *args, "--methods", "gff,max", "--no-progress"])
    finally:
        for handler in [h for h in logging.getLogger().handlers if getattr(h, "_pipelines", False)]:
            logging.getLogger().removeHandler(handler)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "2 of 2 methods failed" in result.output
    for method in ("gff", "max"):  # each was tried, each failure names its file and the cause
        assert f"fuse {method}: {bench / 'fused' / method}/" in result.output
        assert f"fuse {method}: " in result.output and ": No space left on device" in result.output

    result = CliRunner().invoke(cli, ["prepare", *args[:2], "-s", f"run.root={full_disk}/runs"])
    assert result.exit_code == 2
    assert result.output.startswith(f"Error: prepare: {full_disk}/runs") and "No space left on device" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_detect_reports_each_failing_method_and_goes_on(sample_benchmark, tmp_path: Path):
    bench = tmp_path / "benchmark"
    shutil.copytree(sample_benchmark.root, bench, ignore=shutil.ignore_patterns("fused"))
    args = ["-s", f"data.benchmark={bench}", "-s", f"run.root={tmp_path}"]
    try:
        result = CliRunner().invoke(cli, ["detect", *args, "--methods", "gff,max"])
    finally:
        for handler in [h for h in logging.getLogger().handlers if getattr(h, "_pipelines", False)]:
            logging.getLogger().removeHandler(handler)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "2 of 2 runs failed" in result.output
    assert "gff: " in result.output and "max: " in result.output and "fused set 'max' is missing" in result.output


def test_metrics_go_on_with_the_other_methods_when_a_disk_is_full(sample_benchmark, tmp_path: Path, full_disk: Path):
    from pipelines.config import load_config, run_layout
    from pipelines.fuse import fuse_method
    from pipelines.metrics import MetricsError, run_metrics

    bench = tmp_path / "benchmark"
    shutil.copytree(sample_benchmark.root, bench, ignore=shutil.ignore_patterns("fused"))
    config = load_config("sample", [f"data.benchmark={bench}", f"run.root={tmp_path / 'runs'}", "fusion.workers=1",
                                    "metrics.entropy=false", "metrics.workers=1"])
    for method in ("ir", "vi"):
        fuse_method(config, method, progress=False)
    (full_disk / "filler").write_bytes(b"x" * 64 * 1024)  # the disk is full
    metrics = run_layout(config).metrics
    metrics.folder.mkdir(parents=True)
    metrics.method("ir").folder.symlink_to(full_disk, target_is_directory=True)
    with pytest.raises(MetricsError, match=f"1 of 2 methods failed:\nmetrics ir: {metrics.method('ir').per_image}: "
                                           "No space left on device"):
        run_metrics(config, ["ir", "vi"])
    assert metrics.method("vi").per_image.is_file() and metrics.summary.is_file()
