"""The run lock with real processes: a second writer is refused naming the holder, a dead holder's lock is taken over."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipelines.cli import cli
from pipelines.run_lock import RunLockedError, folder_lock

REPO = Path(__file__).resolve().parents[1]


def hold_lock(folders: list[Path]) -> subprocess.Popen:
    """A separate process that takes the locks of ``folders``, says so, and sleeps until killed."""
    script = textwrap.dedent(f"""
        import sys, time
        from pipelines.run_lock import folders_locked
        with folders_locked({[str(f) for f in folders]!r}):
            print("locked", flush=True)
            time.sleep(600)
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    holder = subprocess.Popen([sys.executable, "-c", script, "run-all", "-c", "sample"], stdout=subprocess.PIPE,
                              text=True, env=env)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_second_writer_is_refused_with_the_holders_pid_and_command(tmp_path):
    """Observation 1: two run-all on one run folder must not both write."""
    run = tmp_path / "runs" / "r"
    holder = hold_lock([run])
    try:
        result = CliRunner().invoke(cli, ["run-all", "-c", "sample", "-s", f"run.root={tmp_path / 'runs'}",
                                          "-s", "run.name=r", "--no-progress"])
        assert result.exit_code == 2, result.output
        assert f"{run}: in use by pid {holder.pid} (-c run-all -c sample)" in result.output
        assert not (run / "logs").exists() and not (run / "benchmark").exists()  # refused before any work
    finally:
        holder.kill()
        holder.wait()


def test_the_benchmark_folder_is_locked_too(tmp_path):
    bench = tmp_path / "shared_benchmark"
    holder = hold_lock([bench])
    try:
        result = CliRunner().invoke(cli, ["prepare", "-c", "sample", "-s", f"run.root={tmp_path / 'runs'}",
                                          "-s", f"data.benchmark={bench}"])
        assert result.exit_code == 2
        assert f"{bench}: in use by pid {holder.pid}" in result.output
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path):
    holder = hold_lock([tmp_path])
    with pytest.raises(RunLockedError, match=f"pid {holder.pid}"):
        with folder_lock(tmp_path):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with folder_lock(tmp_path, argv=["pipelines", "detect"]) as path:
        assert f'"pid": {os.getpid()}' in path.read_text()
