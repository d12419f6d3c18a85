"""``run-all`` on SLURM: prepare here, then the grid of :func:`pipelines.grid.plan` as jobs through submitit.

Each job runs one task (a detector's seeds form a job array) with the stage functions inline run-all
calls, and waits for what it needs with ``afterany``: it starts when its dependencies have ended, however
they ended, and its stage checks its inputs itself (``afterok`` would leave it pending forever after a
failure). Tasks whose work is current are not submitted, unless something they depend on is.

Preemption and time limits: every job is requeueable. SLURM warns a job ``executor.signal_delay_s``
before its time limit (USR2); submitit then calls :meth:`GridCall.checkpoint`, which resubmits the same
call, and requeues the job. Jobs start in :mod:`pipelines.executors.job`, which holds a warning that
comes while the job is still starting until submitit listens. A job requeued or preempted without warning (``scontrol requeue``, a
preemption: SIGTERM, then SIGKILL) starts the same call again. Either way the stage resumes from its own
files: a learned fuser from its last epoch's checkpoint, a fused set from its manifest, a detector from
its seed folder (a detector: ``detect.resume``, from last.pt, else from the start, which gives the same
results; a segmenter: from its last epoch).

Only this module imports submitit: the inline executor needs no engine.
"""
from __future__ import annotations

import logging
import os
import shlex
import socket
import time
from pathlib import Path
from typing import Any

import submitit

from pipelines.config import run_layout
from pipelines.executors.job import release_warning
from pipelines.executors.state import SKIPPED, GridState, TaskRecord, need, wait
from pipelines.grid import Job, Task, is_done, plan, run_task
from pipelines.logs import FORMAT
from pipelines.run_lock import file_lock, folders_locked
from pipelines.schema import Config

log = logging.getLogger(__name__)

JOB_SETUP = ["export TQDM_DISABLE=1"]  # a job's log is a file: no progress bars in it (tqdm reads this on import)


class GridExecutor(submitit.SlurmExecutor):
    """submitit's SLURM executor, its jobs started by :mod:`pipelines.executors.job` instead of submitit's
    own entry point (which it then calls)."""

    @property
    def _submitit_command_str(self) -> str:
        return " ".join([self.python, "-u -m pipelines.executors.job", shlex.quote(str(self.folder))])


class GridCall(submitit.helpers.Checkpointable):
    """What a job runs: one task of the grid with the run's config. Checkpointable: warned before its time
    limit, submitit resubmits this same call and requeues the job (the stages resume from their files)."""

    def __init__(self, config: Config, gpus: int) -> None:
        self.config = config
        self.gpus = gpus

    def __call__(self, task: Task) -> dict[str, Any]:
        logging.basicConfig(level=logging.INFO, format=FORMAT, force=True)  # into this job's own log
        logging.getLogger("submitit").propagate = False  # it writes there itself
        release_warning(task.key)  # submitit listens now
        rank = distributed_environment()
        config = job_config(self.config, self.gpus)
        log.info("%s: SLURM job %s on %s, CUDA_VISIBLE_DEVICES=%s, run.device=%s, restart %s", task.key,
                 os.environ.get("SLURM_JOB_ID"), socket.gethostname(), os.environ.get("CUDA_VISIBLE_DEVICES"),
                 config.run.device, os.environ.get("SLURM_RESTART_COUNT", "0"))
        result = run_task(config, task, lock_files=rank == 0)
        return {**result, "host": socket.gethostname(), "gpus": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "restarts": int(os.environ.get("SLURM_RESTART_COUNT", "0"))}

    def checkpoint(self, task: Task) -> submitit.helpers.DelayedSubmission:
        log.warning("%s: near the time limit: requeued; it resumes from its last completed unit", task.key)
        return super().checkpoint(task)


def job_config(config: Config, gpus: int) -> Config:
    """The config as the job sees it: ``run.device`` naming GPUs of the submitting machine is replaced by the
    GPUs SLURM gave this job (auto: the first of CUDA_VISIBLE_DEVICES), a job without GPUs computes on CPU."""
    config = config.model_copy(deep=True)
    if gpus == 0:
        config.run.device = "cpu"
    elif config.run.device not in ("auto", "cpu"):
        log.info("run.device=%s is the submitter's; this job uses its own GPUs", config.run.device)
        config.run.device = "auto"
    return config


def distributed_environment() -> int:
    """For a job of several tasks (DDP training over ``executor.gpus.train`` GPUs), the variables
    torch.distributed reads, from SLURM's; returns this process's rank."""
    env = submitit.JobEnvironment()
    if env.num_tasks > 1:
        os.environ.update(RANK=str(env.global_rank), LOCAL_RANK=str(env.local_rank), WORLD_SIZE=str(env.num_tasks),
                          MASTER_ADDR=env.hostnames[0], MASTER_PORT=str(20000 + int(env.job_id.split("_")[0]) % 20000))
    return env.global_rank


def submit(config: Config, jobs: list[Job], hold: bool = False) -> list[TaskRecord]:
    """Submit every job whose work is not current (its tasks that are not, as an array when several);
    returns one record per task, skipped ones included. ``hold``: submitted held (a benchmark)."""
    need("sbatch")
    section = config.executor
    folder = Path(section.folder or run_layout(config).grid.jobs)
    ids: dict[str, str] = {}  # job key -> SLURM job id (an array's id: afterany waits for all its tasks)
    records = []
    for job in jobs:
        after = sorted({ids[key] for key in job.after if key in ids})
        todo = [t for t in job.tasks if after or not is_done(config, t)]
        records += [TaskRecord(t.key, job.key, job.kind, list(job.after), state=SKIPPED, detail="already done")
                    for t in job.tasks if t not in todo]
        if not todo:
            continue
        executor = GridExecutor(folder=folder, max_num_timeout=section.max_requeues)  # parameters accumulate
        executor.update_parameters(**sbatch_parameters(config, job, after, hold))
        call = GridCall(config, job.resources.gpus)
        submitted = executor.map_array(call, todo) if len(todo) > 1 else [executor.submit(call, todo[0])]
        ids[job.key] = submitted[0].job_id.split("_")[0]
        for task, handle in zip(todo, submitted):
            records.append(TaskRecord(task.key, job.key, job.kind, list(job.after), id=handle.job_id,
                                      state="pending", log=str(handle.paths.stdout),
                                      result=str(handle.paths.result_pickle)))
        log.info("submitted %s: job %s (%d task(s))%s", job.key, ids[job.key], len(todo),
                 f", after {','.join(after)}" if after else "")
    return records


def sbatch_parameters(config: Config, job: Job, after: list[str], hold: bool) -> dict[str, Any]:
    """submitit's SlurmExecutor parameters of one job: the executor section and the job's resources."""
    section, res = config.executor, job.resources
    ddp = job.kind == "train" and res.gpus > 1
    extra: dict[str, Any] = {"requeue": True, **({"hold": True} if hold else {}), **section.sbatch}
    parameters: dict[str, Any] = {
        "job_name": f"{config.run.name}:{job.key}", "comment": str(run_layout(config).root),
        "time": res.minutes, "cpus_per_task": res.cpus,
        "signal_delay_s": section.signal_delay_s, "array_parallelism": section.array_parallelism,
        "setup": [*JOB_SETUP, *section.setup], "additional_parameters": extra, "stderr_to_stdout": True,
        "ntasks_per_node": res.gpus if ddp else 1,
    }
    if res.gpus:
        parameters["gpus_per_node"] = res.gpus
    if res.mem_gb:
        parameters["mem"] = f"{res.mem_gb}GB"
    if after:
        parameters["dependency"] = "afterany:" + ":".join(after)
    for key in ("partition", "account", "qos", "constraint"):
        if getattr(section, key):
            parameters[key] = getattr(section, key)
    return parameters


def run_grid(config: Config, detach: bool = False) -> GridState:
    """``run-all`` with ``run.executor=slurm``: re-attach to the run's live grid, or prepare, plan and submit
    one; then wait for it unless ``detach``. Never holds the run's exclusive lock while jobs run."""
    for tool in ("sbatch", "squeue", "scancel"):  # before any work: one line saying what is missing
        need(tool)
    layout = run_layout(config)
    state = GridState.load(layout.grid.state)
    if state is not None:
        state.refresh()
        state.save()
    if state is not None and state.live:
        log.info("re-attaching to the run's grid: %d job(s) still queued or running", len(state.live))
    else:
        state = prepare_and_submit(config)
    if not detach:
        wait(state, config.executor.poll_s, report=lambda t: log.info("%s: %s%s", t.key, t.state,
                                                                      f" ({t.detail})" if t.detail else ""))
    return state


def prepare_and_submit(config: Config) -> GridState:
    from pipelines.prepare import prepare_from_config

    layout = run_layout(config)
    with file_lock(layout.grid.submit_lock):  # a second submitter is refused, naming this one
        with folders_locked([layout.root, layout.benchmark]):
            prepare_from_config(config)
        start = time.time()
        records = submit(config, plan(config))
        state = GridState(layout.grid.state, records, submitted=start)
        state.save()
    log.info("grid: %d task(s) submitted, %d already done (%.1f s); record: %s",
             sum(r.state != SKIPPED for r in records), sum(r.state == SKIPPED for r in records),
             time.time() - start, layout.grid.state)
    return state


def format_jobs(state: GridState) -> str:
    """One line per task: key, SLURM id, state, log."""
    lines = [f"{'job':<28}{'id':>12}  {'state':<10}log"]
    for task in state.tasks:
        reason = f" ({task.reason})" if task.reason else ""
        lines.append(f"{task.key:<28}{task.id or '-':>12}  {task.state + reason:<10}{task.log or ''}")
    return "\n".join(lines)

