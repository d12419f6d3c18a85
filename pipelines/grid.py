"""The job graph of a run: which stage calls ``run-all`` makes, in which order, with what resources.

:func:`plan` is the one place that knows the stages; an executor (``pipelines/executors/``) only runs
what it returns. A :class:`Job` is one unit the scheduler sees (a SLURM job, or a job array when it has
several tasks: the seeds of a detector); each :class:`Task` calls the same stage functions ``run-all``
calls inline, holds its own locks, and says whether its work is already done (then it is not submitted,
unless something it depends on is). Dependencies are "after any": a job starts when what it waits for
has ended, however it ended, and its stage checks its own inputs (a detector refuses an incomplete
fused set), so a failure never leaves a job pending forever.

For the published config (detection with YOLOv5s only): 2 trainings, 10 fused sets, 10 metrics jobs, 10
detector arrays of 3 seeds and one closing job (summaries, metrics summary, compare, report): 33 jobs, 53
tasks; each further (task, model) adds 10 arrays of its seeds. With ``executor.fuse_shards=n`` a learned
method's fused set is an array of n shards (each the ``fuse --shard i/n`` of the command line).
"""
from __future__ import annotations

import logging
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from fusionbench.errors import FusionBenchError
from pipelines.config import run_layout
from pipelines.run_lock import LOCK_NAME, file_lock, method_lock_path
from pipelines.schema import Config

if TYPE_CHECKING:
    from fusion.engine import Shard

log = logging.getLogger(__name__)


class GridError(FusionBenchError):
    """A task of the grid whose stage calls failed (each named with its error)."""


@dataclass(frozen=True)
class Step:
    """One stage call of a task, by reference to the stage's own function: ``call(config, *args, **kwargs)``
    (the config is the job's: its executor resolves ``run.device`` where the job runs)."""

    name: str
    call: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Lock:
    """A lock file a task holds while it runs (:mod:`pipelines.run_lock`): a folder's, or one method's."""

    path: Path
    shared: bool = False


@dataclass(frozen=True)
class Task:
    """One unit of work: its steps, its locks, and the submitter's test of whether it is already done."""

    key: str
    steps: tuple[Step, ...]
    locks: tuple[Lock, ...] = ()
    done: Step | None = None  # a stage's cheap test, called like the steps; None: always submitted


@dataclass(frozen=True)
class Resources:
    gpus: int
    cpus: int
    mem_gb: int
    minutes: int


@dataclass(frozen=True)
class Job:
    """What the scheduler sees: one job, or a job array when it has several tasks."""

    key: str
    kind: str  # train | fuse | downstream | metrics | compare: the executor section's per-kind settings
    tasks: tuple[Task, ...]
    after: tuple[str, ...]
    resources: Resources


def resources(config: Config, kind: str, gpu: bool = True) -> Resources:
    """The executor section's settings for a kind of job (``gpu=False``: a job that computes on CPUs only)."""
    section = config.executor
    return Resources(gpus=getattr(section.gpus, kind) if gpu else 0, cpus=getattr(section.cpus, kind),
                     mem_gb=getattr(section.mem_gb, kind), minutes=getattr(section.time, kind))


# --- the stages: the only part that knows what run-all does ------------------------------------

def plan(config: Config) -> list[Job]:
    """Every job of ``run-all`` for ``config``, dependencies before dependents (prepare excluded: the
    submitter runs it before it plans)."""
    from fusion.engine import Shard
    from fusion.registry import is_learned
    from pipelines import downstream, metrics, train_fusion
    from pipelines.config import configured_methods, evaluated_tasks
    from pipelines.run_all import methods_to_train

    layout = run_layout(config)
    run = (Lock(layout.root / LOCK_NAME, shared=True), Lock(layout.benchmark / LOCK_NAME, shared=True))

    def unit(key: str, call: Step, own: tuple[Lock, ...], done: Step | None) -> Task:
        return Task(key, (call,), (*run, *own), done)

    methods = configured_methods(config)
    trained = methods_to_train(config)
    jobs = []
    for m in trained:
        task = unit(f"train/{m}", Step(f"train-fusion {m}", train_fusion.train_fusion, (m,)),
                    (Lock(method_lock_path(layout.fusion_stage, m)),), Step("trained", train_fusion.is_trained, (m,)))
        jobs.append(Job(task.key, "train", (task,), (), resources(config, "train")))
    for m in methods:  # a learned method's set may be a job array of shards
        shards = config.executor.fuse_shards if is_learned(m) else 1
        tasks = tuple(unit(*fuse_unit(layout.benchmark / "fused", m, Shard(i, shards))) for i in range(1, shards + 1))
        after = (f"train/{m}",) if m in trained else ()
        jobs.append(Job(f"fuse/{m}", "fuse", tasks, after, resources(config, "fuse", gpu=is_learned(m))))
    for m in methods:  # before the downstream jobs: FIFO priority lets these CPU jobs start beside pending GPU jobs
        task = unit(f"metrics/{m}", Step(f"metrics {m}", metrics.run_metrics, ([m],)),
                    (Lock(method_lock_path(layout.metrics.folder, m)),), Step("measured", metrics.is_current, (m,)))
        jobs.append(Job(task.key, "metrics", (task,), (f"fuse/{m}",), resources(config, "metrics")))
    for kind, models in evaluated_tasks(config):  # per (task, model, method): one task per seed, a job array
        seeds = kind.seeds(config.task_settings(kind.name))
        for model in models:
            folder = layout.task(kind.name).model(model).folder
            for m in methods:
                key = f"{kind.name}/{model}/{m}"
                units = tuple(unit(f"{key}/seed{s}", Step(f"{key} seed {s}", downstream.run_unit, (kind.name, model, m, s)),
                                   (Lock(method_lock_path(layout.benchmark / "fused", m), shared=True),  # read
                                    Lock(method_lock_path(folder, m), shared=True),
                                    Lock(method_lock_path(folder, m, f"seed{s}"))),
                                   Step("evaluated", downstream.unit_done, (kind.name, model, m, s)))
                              for s in seeds)
                jobs.append(Job(key, "downstream", units, (f"fuse/{m}",), resources(config, "downstream")))
    closing = Task("compare", (Step("downstream summaries", summarise_downstream), Step("metrics", measure_fused),
                               Step("compare", compare_fused), Step("report", build_report)),
                   (Lock(layout.root / LOCK_NAME), Lock(layout.benchmark / LOCK_NAME)))
    jobs.append(Job("compare", "compare", (closing,), tuple(j.key for j in jobs), resources(config, "compare")))
    return jobs


def fuse_unit(fused: Path, method: str, shard: Shard) -> tuple[str, Step, tuple[Lock, ...], Step]:
    """A fused set's task (key, call, own locks, done test), whole or one :class:`~fusion.engine.Shard` of it:
    a shard locks its part and shares the method's lock with the other shards, as ``fuse --shard`` does; the
    last shard to end completes the set."""
    from pipelines.fuse import fuse_method, is_current

    done = Step("fused", is_current, (method,))
    if shard.count == 1:
        return (f"fuse/{method}", Step(f"fuse {method}", fuse_method, (method,), {"progress": False}),
                (Lock(method_lock_path(fused, method)),), done)
    return (f"fuse/{method}/{shard.name}",
            Step(f"fuse {method} {shard.index}/{shard.count}", fuse_method, (method,), {"progress": False, "shard": shard}),
            (Lock(method_lock_path(fused, method), shared=True), Lock(method_lock_path(fused, method, shard.name))), done)


def fused_methods(config: Config) -> list[str]:
    """The configured methods whose fused set is complete: what the closing steps compare (inline run-all
    uses the sets fused in its run)."""
    from fusionbench.benchmark import Benchmark
    from fusionbench.fused_set import is_complete
    from pipelines.config import configured_methods

    benchmark = Benchmark(run_layout(config).benchmark)
    return [m for m in configured_methods(config) if is_complete(benchmark, m)]


def summarise_downstream(config: Config) -> None:
    """Each (task, model, method)'s across-seed summary once all its seeds have results (run_method then
    trains nothing), and each model's summary table."""
    from pipelines.config import evaluated_tasks
    from pipelines.downstream import run_method, write_model_summary

    for kind, models in evaluated_tasks(config):
        seeds = kind.seeds(config.task_settings(kind.name))
        for model in models:
            runs = run_layout(config).task(kind.name).model(model)
            for method in fused_methods(config):
                if all(kind.files(runs.method(method).seed(s).folder).results.is_file() for s in seeds):
                    run_method(config, kind.name, model, method)
            write_model_summary(config, kind.name, model)


def measure_fused(config: Config) -> Path:
    from pipelines.metrics import run_metrics

    return run_metrics(config, fused_methods(config))


def compare_fused(config: Config) -> Path:
    from pipelines.compare import run_compare

    return run_compare(config, fused_methods(config))


def build_report(config: Config) -> Path:
    from pipelines.report import build_report as build

    return build(config)


# --- running a task (the same in every executor) -----------------------------------------------

def is_done(config: Config, task: Task) -> bool:
    """The submitter's test: True when the task's stage says its work is current (a task without a test
    always runs: its steps skip what is current themselves)."""
    return task.done is not None and bool(task.done.call(config, *task.done.args, **task.done.kwargs))


def run_task(config: Config, task: Task, lock_files: bool = True) -> dict[str, Any]:
    """Hold the task's locks (``lock_files=False``: a DDP rank beside the one that holds them) and run its
    steps in order; a failed step is logged and the next one still runs (as in inline run-all); raises
    :class:`GridError` naming every failed step."""
    start = time.time()
    failed = []
    with ExitStack() as stack:
        for lock in task.locks if lock_files else ():
            stack.enter_context(file_lock(lock.path, shared=lock.shared))
        for step in task.steps:
            log.info("%s: %s", task.key, step.name)
            try:
                step.call(config, *step.args, **step.kwargs)
            except Exception as error:  # noqa: BLE001 - one step's failure must not lose the next ones
                log.exception("%s failed", step.name)
                failed.append(f"{step.name}: {type(error).__name__}: {error}")
    if failed:
        raise GridError(f"{task.key}: " + "; ".join(failed))
    return {"key": task.key, "start": start, "end": time.time()}
