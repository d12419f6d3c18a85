"""``run-all`` with ``run.executor=local``: the grid of :func:`pipelines.grid.plan` on this machine,
``executor.local_workers`` tasks at a time, each in a process of its own.

A job starts once every job it waits for has ended (however it ended: its stage checks its own inputs, as
on SLURM); its tasks whose work is current are skipped, tested then, after what they depend on has run.
Each worker computes on ``cores // local_workers`` CPU threads: small networks on a few cores gain little
from a second thread (one method's YOLOv5n detection of the sample: 1.12x on 2 threads) and much from a
second task beside them (two of them side by side: 1.5x). The tasks take the run's locks themselves, as
SLURM jobs do; this process holds none while they run. Interrupted (Ctrl-C, SIGTERM), it interrupts its
workers, whose stages save their progress; killed, its workers end with it (no training is left behind).
A rerun resumes every stage from its files.
"""
from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from typing import Any

from pipelines.config import run_layout
from pipelines.executors.state import DONE, FAILED, SKIPPED, TaskRecord, as_run_summary
from pipelines.grid import Job, Task, is_done, plan, run_task
from pipelines.run_lock import folders_locked
from pipelines.schema import Config

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")  # read by libraries the tasks import later
STOP_S = 30  # seconds an interrupted worker gets to save its stage's progress
URGENCY = ("train", "fuse", "downstream", "metrics", "compare")  # job kinds, the first taken first


def worker_threads(config: Config) -> int:
    """CPU threads of each worker: this machine's cores shared between the workers."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // config.executor.local_workers)


def run_local(config: Config) -> Any:
    """Prepare here, then run the grid in a pool of worker processes; returns inline run-all's summary. Refused
    before it writes anything (its log included) while another command holds the run's locks; holds none
    while the workers run (each task takes them itself)."""
    from pipelines.logs import setup_logging
    from pipelines.prepare import prepare_from_config
    from pipelines.run_all import RunSummary

    layout = run_layout(config)
    summary, start = RunSummary(), time.perf_counter()
    with folders_locked([layout.root, layout.benchmark]):
        setup_logging(config, "run-all")
        if summary.step("prepare", "-", lambda: prepare_from_config(config)) is None:
            return summary
    threads = worker_threads(config)
    log.info("local grid: %d worker process(es) of %d CPU thread(s) each", config.executor.local_workers, threads)
    records: list[TaskRecord] = []
    with worker_environment(threads), ProcessPoolExecutor(
            config.executor.local_workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=start_worker, initargs=(config, threads)) as pool:
        try:
            run_jobs(config, plan(config), pool, config.executor.local_workers, records, str(layout.log("run-all")))
        except BaseException:  # Ctrl-C, SIGTERM (raised by pipelines.cli), a bug: the workers stop too
            stop_workers(pool)
            raise
    log.info("local grid: %d task(s) ran, %d already done", sum(r.state != SKIPPED for r in records),
             sum(r.state == SKIPPED for r in records))
    grid = as_run_summary(config, records)
    summary.steps += grid.steps
    summary.report = grid.report
    summary.wall_s = time.perf_counter() - start
    return summary


def run_jobs(config: Config, jobs: list[Job], pool: Executor, slots: int, records: list[TaskRecord],
             log_path: str) -> None:
    """Run each job's unfinished tasks in ``pool`` (``slots`` at a time) once what it waits for has ended;
    return when all have ended. ``records`` gets one :class:`TaskRecord` per task (skipped, done or failed).

    Tasks wait here, not in the pool's queue, so that a free worker takes the most urgent ready task: by kind
    (:data:`URGENCY`: a training first, then the fusion it unblocks), then in plan order."""
    waiting, ended = list(jobs), set()
    ready: list[tuple[int, int, Task, TaskRecord]] = []
    running: dict[Future, TaskRecord] = {}
    left: dict[str, int] = {}  # job key -> its tasks not yet ended
    while waiting or ready or running:
        while newly := [j for j in waiting if all(key in ended for key in j.after)]:  # a skipped job readies others
            job = newly[0]
            waiting.remove(job)
            for task in job.tasks:
                record = TaskRecord(task.key, job.key, job.kind, list(job.after), log=log_path)
                records.append(record)
                if is_done(config, task):
                    record.state, record.detail = SKIPPED, "already done"
                    continue
                ready.append((URGENCY.index(job.kind), len(records), task, record))
                left[job.key] = left.get(job.key, 0) + 1
            if not left.get(job.key):
                ended.add(job.key)
        ready.sort(key=lambda item: item[:2])
        while ready and len(running) < slots:
            _, _, task, record = ready.pop(0)
            record.state = "running"
            running[pool.submit(run_task, config, task)] = record
        if not running:
            if waiting:  # plan() orders every job after what it waits for: a job waiting on nothing left is a bug
                raise RuntimeError(f"jobs wait for jobs that are not in the grid: {[j.key for j in waiting]}")
            break
        finished, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in finished:
            record = running.pop(future)
            try:
                record.info, record.state = future.result(), DONE
            except Exception as error:  # noqa: BLE001 - a task's failure is its record's, the others go on
                record.state, record.detail = FAILED, f"{type(error).__name__}: {error}"
            log.info("%s: %s%s", record.key, record.state, f" ({record.detail})" if record.detail else "")
            left[record.job] -= 1
            if not left[record.job]:
                ended.add(record.job)


def stop_workers(pool: ProcessPoolExecutor) -> None:
    """Interrupt the running tasks as Ctrl-C would (SIGINT: their stages save what they have done), give them
    :data:`STOP_S` seconds, then end them; tasks not started are dropped."""
    pool.shutdown(wait=False, cancel_futures=True)
    workers = multiprocessing.active_children()
    for worker in workers:
        os.kill(worker.pid, signal.SIGINT)
    deadline = time.monotonic() + STOP_S
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
        if worker.is_alive():
            worker.terminate()


@contextmanager
def worker_environment(threads: int) -> Iterator[None]:
    """The environment the workers start with (they inherit it when they are spawned): their thread count for
    the libraries that read it at import, and no progress bars (tqdm reads that at import too; the workers'
    output interleaves). This process's own environment is given back afterwards."""
    values = {**{name: str(threads) for name in THREAD_VARIABLES}, "TQDM_DISABLE": "1"}
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def start_worker(config: Config, threads: int) -> None:
    """A worker's set-up: its thread count in torch and numba (numba reads its environment variable once, at
    import, which unpickling the config may already have done), the run's log, and death with the parent."""
    if sys.platform.startswith("linux"):  # elsewhere a killed run-all's workers finish their task first
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() == 1:  # the parent died before prctl took effect
            os._exit(1)
    import numba
    import torch

    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))  # starts numba's pool: then torch's count
    torch.set_num_threads(threads)
    from pipelines.logs import setup_logging

    setup_logging(config, "run-all")
