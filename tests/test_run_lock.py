"""The run lock with real processes: a second writer is refused naming the holder, writers of different
methods (or shards) run side by side, and a dead holder's lock is taken over."""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from runs import MODEL

from pipelines.cli import cli
from pipelines.run_lock import HOST, LOCK_NAME, RunLockedError, file_lock, method_lock_path

REPO = Path(__file__).resolve().parents[1]


def hold_locks(locks: list[tuple[Path, bool]]) -> subprocess.Popen:
    """A separate process that takes the lock files ``(path, shared)``, says so, and sleeps until killed."""
    script = textwrap.dedent(f"""
        import contextlib, pathlib, time
        from pipelines.run_lock import file_lock
        with contextlib.ExitStack() as stack:
            for path, shared in {[(str(p), s) for p, s in locks]!r}:
                stack.enter_context(file_lock(pathlib.Path(path), shared=shared))
            print("locked", flush=True)
            time.sleep(600)
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    holder = subprocess.Popen([sys.executable, "-c", script, "run-all", "-c", "sample"], stdout=subprocess.PIPE,
                              text=True, env=env)
    assert holder.stdout.readline().strip() == "locked"
    return holder


@pytest.fixture()
def run_cli():
    """``pipelines`` in this process; the command's log handlers are dropped after each call."""
    def invoke(*args: str):
        try:
            return CliRunner().invoke(cli, list(args))
        finally:
            for handler in [h for h in logging.getLogger().handlers if getattr(h, "_pipelines", False)]:
                logging.getLogger().removeHandler(handler)
    return invoke


@pytest.fixture()
def holders():
    started: list[subprocess.Popen] = []
    yield lambda locks: started.append(hold_locks(locks)) or started[-1]
    for holder in started:
        holder.kill()
        holder.wait()


def test_a_second_run_all_is_refused_with_the_holders_pid_and_command(tmp_path, holders, run_cli):
    """Observation 1: two run-all on one run folder must not both write."""
    run = tmp_path / "runs" / "r"
    holder = holders([(run / LOCK_NAME, False)])
    result = run_cli("run-all", "-s", f"run.root={tmp_path / 'runs'}", "-s", "run.name=r", "--no-progress")
    assert result.exit_code == 2, result.output
    assert f"{run}: in use by pid {holder.pid} on {HOST} (-c run-all -c sample)" in result.output
    assert not (run / "logs").exists() and not (run / "benchmark").exists()  # refused before any work


def test_the_benchmark_folder_is_locked_too(tmp_path, holders, run_cli):
    bench = tmp_path / "shared_benchmark"
    holder = holders([(bench / LOCK_NAME, False)])
    result = run_cli("prepare", "-s", f"run.root={tmp_path / 'runs'}", "-s", f"data.benchmark={bench}")
    assert result.exit_code == 2
    assert f"{bench}: in use by pid {holder.pid}" in result.output


def test_methods_and_shards_run_side_by_side_but_never_twice(tmp_path, holders, run_cli):
    """One detector per GPU and a fused set's shards are parallel by design (README); the same method
    twice, or a whole-run writer beside them, is refused."""
    run, bench = tmp_path / "runs" / "sample", tmp_path / "runs" / "sample" / "benchmark"
    args = ["-s", f"run.root={tmp_path / 'runs'}"]
    holder = holders([(run / LOCK_NAME, True), (bench / LOCK_NAME, True),
                      (method_lock_path(run / "detection" / MODEL, "ir"), False),
                      (method_lock_path(bench / "fused", "gff"), True),
                      (method_lock_path(bench / "fused", "gff", "shard-1-of-2"), False)])
    refused = f"in use by pid {holder.pid}"
    assert refused in run_cli("detect", *args, "--method", "ir").output
    assert refused in run_cli("fuse", *args, "--method", "gff", "--shard", "1/2").output
    assert refused in run_cli("fuse", *args, "--method", "gff").output  # the whole set while shards write
    for command in (["run-all", "--no-progress"], ["metrics"], ["prepare"]):
        assert refused in run_cli(*command, *args).output
    for allowed in (["detect", "--method", "vi"], ["fuse", "--method", "gff", "--shard", "2/2"],
                    ["fuse", "--method", "max"]):
        result = run_cli(*allowed, *args)
        assert "in use" not in result.output and "no prepared benchmark here" in result.output  # got past the locks


def test_a_fused_set_being_read_is_not_rewritten_and_one_being_written_is_not_read(tmp_path, holders, run_cli):
    """Observation (#22, medium): `fuse` could rewrite a fused set while `detect` trained on it (different locks).
    A downstream command holds its methods' fused-set locks shared; a whole-set fuse takes them exclusive."""
    bench = tmp_path / "runs" / "sample" / "benchmark"
    args = ["-s", f"run.root={tmp_path / 'runs'}"]
    fusing = holders([(method_lock_path(bench / "fused", "gff"), False)])  # a fuse of gff at work
    assert f"in use by pid {fusing.pid}" in run_cli("detect", *args, "--method", "gff").output
    assert f"in use by pid {fusing.pid}" in run_cli("segment", *args, "--method", "gff").output
    fusing.send_signal(signal.SIGKILL)
    fusing.wait()
    reading = holders([(method_lock_path(bench / "fused", "vi"), True)])  # a detector reading vi's set
    assert f"in use by pid {reading.pid}" in run_cli("fuse", *args, "--method", "vi").output
    beside = run_cli("detect", *args, "--method", "vi")  # another reader is welcome
    assert "in use" not in beside.output and "no prepared benchmark here" in beside.output


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path, holders):
    path = tmp_path / LOCK_NAME
    holder = holders([(path, False)])
    with pytest.raises(RunLockedError, match=f"pid {holder.pid}"):
        with file_lock(path):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with file_lock(path, argv=["pipelines", "detect"]):
        assert f'"pid": {os.getpid()}' in path.read_text()


def test_a_record_from_another_host_is_kept_and_only_this_hosts_pids_are_probed(tmp_path):
    """On a cluster a lock file holds records of other nodes: their pids mean nothing here, so they are
    never probed (a dead local pid is dropped, a remote one is kept and named with its host)."""
    path = tmp_path / LOCK_NAME
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path.write_text(json.dumps({"host": "node-b", "pid": dead.pid, "argv": ["detect"]}) + "\n"
                    + json.dumps({"host": HOST, "pid": dead.pid, "argv": ["fuse"]}) + "\n")
    with file_lock(path, shared=True, argv=["metrics"]):
        records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["host"], r["argv"]) for r in records] == [("node-b", ["detect"]), (HOST, ["metrics"])]
