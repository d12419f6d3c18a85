"""The SLURM behaviours the executor is built on (../shared/SCALEOUT.md), pinned against the real scheduler so
that an upgrade that changes one is noticed: afterany runs after a failed dependency while afterok leaves
the dependent pending forever; a dependency on a job id that does not exist is accepted; a requeued job
runs again with SLURM_RESTART_COUNT set; a time limit comes with its warning signal to the job's steps,
up to 30 s before it is due (SLURM looks at time limits every 30 s)."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from pipelines.executors.state import squeue


def sbatch(tmp: Path, command: str, *options: str) -> str:
    out = subprocess.run(["sbatch", "--parsable", "-o", str(tmp / "%j.out"), *options, "--wrap", command],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip().split(";")[0]


def state(job: str) -> tuple[str, str]:
    return squeue([job]).get(job, ("GONE", ""))


def wait_for(job: str, wanted: set[str], timeout: float = 60) -> tuple[str, str]:
    end = time.time() + timeout
    while time.time() < end:
        seen = state(job)
        if seen[0] in wanted:
            return seen
        time.sleep(0.5)
    pytest.fail(f"job {job}: {state(job)} after {timeout} s, expected one of {wanted}")


def test_afterany_runs_after_a_failed_dependency_and_afterok_stays_pending(slurm, tmp_path):
    failing = sbatch(tmp_path, "exit 3")
    after_any = sbatch(tmp_path, "echo ran", f"--dependency=afterany:{failing}")
    after_ok = sbatch(tmp_path, "echo ran", f"--dependency=afterok:{failing}")
    assert wait_for(failing, {"FAILED"})[0] == "FAILED"
    assert wait_for(after_any, {"COMPLETED"})[0] == "COMPLETED"
    try:
        time.sleep(2)
        assert state(after_ok) == ("PENDING", "DependencyNeverSatisfied")
    finally:
        subprocess.run(["scancel", after_ok], check=True)
    assert wait_for(after_ok, {"CANCELLED"})[0] == "CANCELLED"


def test_a_dependency_on_a_job_that_does_not_exist_is_accepted(slurm, tmp_path):
    """Job ids are no guard: such a job runs at once (the stages check their own inputs)."""
    job = sbatch(tmp_path, "echo ran", "--dependency=afterany:999999")
    assert wait_for(job, {"COMPLETED"})[0] == "COMPLETED"


def test_a_requeued_job_runs_again_with_its_restart_count(slurm, tmp_path):
    job = sbatch(tmp_path, "echo restart=${SLURM_RESTART_COUNT:-0}; sleep 30", "--requeue", "--open-mode=append")
    out = tmp_path / f"{job}.out"

    def printed(text: str) -> bool:
        end = time.time() + 90
        while time.time() < end and not (out.is_file() and text in out.read_text()):
            time.sleep(0.5)
        return out.is_file() and text in out.read_text()

    try:
        assert printed("restart=0")
        subprocess.run(["scontrol", "requeue", job], check=True)
        assert printed("restart=1")
    finally:
        subprocess.run(["scancel", job], check=True)


def test_a_time_limit_warns_the_jobs_step_before_the_limit(slurm, tmp_path):
    """``--signal=USR2@20`` on a one-minute job: the step gets USR2 10-40 s after its start, before the limit
    (SLURM looks at time limits every 30 s and warns as soon as the warning falls due before its next look:
    up to 30 s before the 20 s asked; a job may thus be warned while it is still starting)."""
    step = "trap 'echo warned \\$SECONDS; exit 0' USR2; while true; do sleep 0.2; done"
    job = sbatch(tmp_path, f"srun bash -c \"{step}\"", "--time=1", "--signal=USR2@20")
    assert wait_for(job, {"COMPLETED", "TIMEOUT", "FAILED"}, timeout=150)[0] == "COMPLETED"
    warned = int((tmp_path / f"{job}.out").read_text().split("warned ")[1].split()[0])
    assert warned <= 42, warned
