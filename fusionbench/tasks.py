"""Downstream tasks as plug-ins: what a task declares, and the registry of tasks and their models.

A fusion method is judged by what it does for a downstream model, so a task is the unit the stages,
``compare``, the report and ``run-all`` iterate over (in the shape of ultralytics' ``task_map``: per
task, its model rows, its trainer and its evaluator). A task declares

- the labels it needs from ``prepare`` (:attr:`Task.labels`: ``boxes``, ``masks``),
- its settings section of the config (:attr:`Task.section`, a pydantic model of its own) and its
  models (:class:`Model` rows; a run's ``tasks`` key lists which ones it evaluates),
- how one model is trained and evaluated for one (method, seed) (:attr:`Task.run`, given a :class:`Unit`),
  writing per-image evidence into the unit's folder and ``results.json`` last,
- its statistics (:class:`TaskStatistics`): names and directions, point values and bootstrap
  replicates from the evidence, and the paired permutation test of its primary statistic.

Built-in tasks are modules listed in :data:`TASK_MODULES`; importing one registers it. A task of your own is a
module of its own plus one line there (or a :func:`register_task` call from anywhere, e.g. a test file).
Neutral: imports no project package but :mod:`fusionbench`.
"""
from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Protocol, Sequence

import numpy as np

from fusionbench.benchmark import Benchmark
from fusionbench.errors import FusionBenchError
from fusionbench.layout import UnitFiles
from fusionbench.stats import Draws

# One entry per built-in task: importing the module registers it (and its models).
TASK_MODULES = ("detection.task", "segmentation.task")

Direction = Literal["higher", "lower"]


class TaskError(FusionBenchError):
    """An unknown task or model, or a task whose inputs are missing."""


@dataclass(frozen=True)
class Statistic:
    """One number a task ranks methods by: ``name`` is its column, ``label`` how tables and sentences show it."""

    name: str
    label: str
    direction: Direction = "higher"
    per_class: str | None = None  # the class it belongs to (per-class tables), None for a summary statistic
    scale: float = 100.0          # shown as ``scale * value`` (percent for AP and IoU)


class TaskStatistics(Protocol):
    """How a task's per-image evidence becomes statistics (``../shared/STATISTICS.md``).

    ``Evidence`` is whatever :meth:`load` returns for one (method, seed): per-image matches, per-image
    confusion matrices, ... Every method of a comparison holds the same test images in the same order.
    """

    primary: Statistic  # the statistic methods are ranked and tested by (first of :meth:`statistics`)

    def load(self, folder: Path) -> Any:
        """The evidence a unit wrote into ``folder``."""

    def statistics(self, evidence: Any) -> list[Statistic]:
        """Every statistic, the primary one first (ranking and paired tests use it)."""

    def images(self, evidence: Any) -> tuple[str, ...]:
        """The test images the evidence covers, in order."""

    def point_values(self, seeds: Sequence[Any]) -> np.ndarray:
        """(seeds, statistics) on the whole test set, one row per seed (NaN where undefined)."""

    def replicate_values(self, seeds: Sequence[Any], draws: Draws) -> np.ndarray:
        """(replicates, seeds, statistics) on each replicate's drawn images (weights ``draws.images``)."""

    def permuted_deltas(self, a: Sequence[Any], b: Sequence[Any], permutations: int,
                        rng: np.random.Generator) -> np.ndarray:
        """(permutations,) primary-statistic differences, mean over seeds of A minus B, with A's and B's
        evidence swapped on a random subset of the images, independently per seed."""


@dataclass(frozen=True)
class Model:
    """One model row of a task (a detector, a segmenter): ``summary`` names it in captions and tables,
    ``options`` is what the task's code needs to build it."""

    name: str
    summary: str
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Bootstrap:
    """The draws behind every interval: replicates and RNG seed."""

    replicates: int
    seed: int


@dataclass(frozen=True)
class Unit:
    """One (task, model, method, seed) computation: what :attr:`Task.run` gets.

    ``folder`` is the unit's own output folder (``protocol.json`` and ``results.json`` are the stage's;
    everything else in it is the task's); ``workspace`` is a folder shared by the task's units of the run
    (caches, a library's settings)."""

    task: str
    model: Model
    method: str
    seed: int
    settings: Any
    benchmark: Benchmark
    folder: Path
    workspace: Path
    device: str | None
    bootstrap: Bootstrap

    @property
    def fused_dir(self) -> Path:
        return self.benchmark.fused_dir(self.method)


@dataclass(frozen=True)
class Task:
    """A downstream task (see the module docstring)."""

    name: str                      # folder and table name, e.g. "detection"
    title: str                     # for headings, e.g. "Object detection"
    section: str                   # the config section of its settings, e.g. "detect"
    settings: type                 # a pydantic model: the section's keys, types, defaults, descriptions
    labels: tuple[str, ...]        # what prepare must provide: "boxes", "masks"
    models: Mapping[str, Model]
    default_models: tuple[str, ...]
    statistics: TaskStatistics
    run: Callable[[Unit], dict[str, Any]]                 # train + evidence + results.json; skips finished work
    protocol: Callable[[Unit], dict[str, Any]]            # what must not change during a unit (settings, data)
    input_keys: tuple[str, ...] = ()                      # protocol keys that identify data: a change redoes the unit
    default: bool = False                                 # evaluated by a config that does not list its tasks
    seeds: Callable[[Any], list[int]] = lambda settings: list(settings.seeds)
    files: Callable[[Path], UnitFiles] = UnitFiles        # the unit's file names (the task's own beside the stage's)
    check: Callable[[Any, Sequence[str]], None] | None = None  # settings x listed models; raises ValueError
    recorded_before: Mapping[str, Any] = field(default_factory=dict)  # protocol keys added later: their old value
    migrations: tuple[tuple[str, str], ...] = ()          # (old, new) folders under the run of earlier versions
    summary_fields: tuple[str, ...] = ()                  # results.json keys kept per seed in the method summary
    figures: Callable[["FigureView"], list[dict[str, Any]]] | None = None  # report figures of one model
    published: Callable[[str], Mapping[str, float] | None] | None = None  # published values per method, by model
    published_label: str = "published"
    code: tuple[str, ...] = ()  # modules whose source computes a unit (with what they import from their package);
                                # () : the module of ``run``. Their code identity is part of each unit's protocol


@dataclass(frozen=True)
class FigureView:
    """What a task's report figures may show of one model's runs (built by the report).

    A figure is a dict: ``{"kind": "grid", "title", "tiles": [(caption, RGB uint8 or None)]}``,
    ``{"kind": "curves", "name", "title", "x", "series": {label: DataFrame}}`` or ``{"kind": "caption", "text"}``."""

    task: Task
    model: Model
    settings: Any
    benchmark: Benchmark
    methods: list[str]
    seeds: list[int]
    stems: list[str]                                  # the test images to show
    first_seed_folders: dict[str, Path]               # method -> its first seed's unit folder (results present)
    first_seed_results: dict[str, dict[str, Any]]     # method -> that unit's results.json
    sources: Callable[[str], list[tuple[str, np.ndarray]]]   # stem -> [("IR", RGB), ("VI", RGB)]
    fused: Callable[[str, str], np.ndarray | None]           # (method, stem) -> RGB, None when missing


_TASKS: dict[str, Task] = {}
_LOADED = False


def register_task(task: Task) -> Task:
    """Add ``task`` (its name must be new, its default models its own)."""
    if task.name in _TASKS and _TASKS[task.name] is not task:
        raise TaskError(f"task {task.name!r} is registered twice")
    unknown = [m for m in task.default_models if m not in task.models]
    if unknown:
        raise TaskError(f"task {task.name!r}: default model(s) {unknown} are not among its models {list(task.models)}")
    _TASKS[task.name] = task
    return task


def register_model(task: str, model: Model) -> Model:
    """Add a model row to a registered task (e.g. a detector of your own)."""
    found = get_task(task)
    if model.name in found.models and found.models[model.name] != model:
        raise TaskError(f"task {task!r}: model {model.name!r} is registered twice")
    _TASKS[task] = replace(found, models={**found.models, model.name: model})
    return model


def load_task_modules() -> None:
    """Import the built-in task modules once (each registers its task)."""
    global _LOADED
    if not _LOADED:
        _LOADED = True
        for module in TASK_MODULES:
            importlib.import_module(module)


def tasks() -> dict[str, Task]:
    """Every registered task by name (built-in ones first)."""
    load_task_modules()
    return dict(_TASKS)


def get_task(name: str) -> Task:
    found = tasks()
    if name not in found:
        near = difflib.get_close_matches(name, list(found), n=1)
        hint = f"; did you mean {near[0]}?" if near else f"; known tasks: {', '.join(found)}"
        raise TaskError(f"unknown task {name!r}{hint}")
    return found[name]


def get_model(task: str, model: str) -> Model:
    models = get_task(task).models
    if model not in models:
        near = difflib.get_close_matches(model, list(models), n=1)
        hint = f"; did you mean {near[0]}?" if near else f"; {task} models: {', '.join(models)}"
        raise TaskError(f"unknown {task} model {model!r}{hint}")
    return models[model]
