"""What today's config expects each artifact of a run to be, and why a recorded one is stale.

Shared glue around the one rule (:func:`fusionbench.identity.stale_reasons`): the stage that writes an
artifact records the identity built here, and every consumer (the stage itself on a rerun, compare, the
report, ``run-all``'s summary, the SLURM submitter) asks the same functions, so all decide alike.

- per-image metrics and entropies: the fused set's content identity, the split, the convention or the
  perception weights (by content), the code of the modules that compute them, and the CSV's own hash;
- a downstream unit: its protocol (settings, data identities, the code identity of the task's modules),
  the copy of it in its results with their bootstrap, and the hashes of its derived files (predictions,
  matches, confusion matrices), each checked against the file on disk;
- a fused set: its fingerprint is the one this config makes (:func:`pipelines.fusers.fingerprint_reasons`);
  metrics and units of a set another config made are stale too.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fusion.metrics import get_convention
from fusionbench.benchmark import Benchmark
from fusionbench.errors import FusionBenchError
from fusionbench.fused_set import fused_set_identity
from fusionbench.identity import code_identity, file_identity, read_identity, read_json, stale_reasons
from fusionbench.layout import MethodRuns, UnitFiles
from fusionbench.tasks import Bootstrap, Task, Unit, get_model
from pipelines.config import evaluated_tasks, run_layout
from pipelines.fusers import fingerprint_reasons
from pipelines.schema import Config

FUSION_PACKAGES = ("fusion", "fusionbench")
METRIC_CODE = ("fusion.metrics",)  # every metric of every convention, and how files are read for them
ENTROPY_CODE = ("fusion.perception", "fusion.color", "fusionbench.images")  # ResNet50, luminance, reading


# --- fusion metrics --------------------------------------------------------------------------------

def perception_identity(config: Config) -> dict[str, Any]:
    """Which ResNet50 weights the config gives, by content (a path says nothing of what the file holds)."""
    section = config.perception
    if section.weights is not None:
        return {"kind": "file", "weights": file_identity(Path(section.weights).expanduser())}
    return {"kind": "torchvision", "weights": "IMAGENET1K_V1"} if section.torchvision else \
        {"kind": "random", "weights": "seed 0"}


def metrics_identity(config: Config, method: str) -> dict[str, Any]:
    """What ``metrics.csv`` of ``method`` is computed from: fused set, split, convention, metric code."""
    return {"fused_set": fused_set_identity(Benchmark(run_layout(config).benchmark), method),
            "split": config.metrics.split, "convention": get_convention(config.metrics.convention).name,
            "code": code_identity(METRIC_CODE, FUSION_PACKAGES)}


def entropy_identity(config: Config, method: str) -> dict[str, Any]:
    """What ``entropy.csv`` of ``method`` is computed from: fused set, split, perception weights, code."""
    return {"fused_set": fused_set_identity(Benchmark(run_layout(config).benchmark), method),
            "split": config.metrics.split, "perception": perception_identity(config),
            "code": code_identity(ENTROPY_CODE, FUSION_PACKAGES)}


def with_content(identity: dict[str, Any], data: Path) -> dict[str, Any]:
    """``identity`` plus the content hash of the file it describes (what a record holds)."""
    return {**identity, "csv": file_identity(data)}


def metrics_reasons(config: Config, method: str) -> list[str]:
    """Why ``method``'s per-image metrics (and entropies, when configured) are not what this config makes
    from today's fused set and code (empty: fresh); a set made under another config makes them stale too."""
    files = run_layout(config).metrics.method(method)
    reasons = fingerprint_reasons(config, method)
    reasons += stale_reasons(read_identity(files.record), with_content(metrics_identity(config, method), files.per_image),
                             f"metrics of {method} ({files.per_image})")
    if config.metrics.entropy:
        reasons += stale_reasons(read_identity(files.entropy_source),
                                 with_content(entropy_identity(config, method), files.entropy),
                                 f"entropies of {method} ({files.entropy})")
    return reasons


# --- downstream units ------------------------------------------------------------------------------

def bootstrap(config: Config) -> Bootstrap:
    """The image bootstrap behind every interval (``stats.bootstrap``, ``stats.seed``)."""
    return Bootstrap(config.stats.bootstrap, config.stats.seed)


def make_unit(config: Config, task: Task, model: str, method: str, seed: int) -> Unit:
    layout = run_layout(config)
    runs = layout.task(task.name)
    return Unit(task=task.name, model=get_model(task.name, model), method=method, seed=seed,
                settings=config.task_settings(task.name), benchmark=Benchmark(layout.benchmark),
                folder=runs.model(model).method(method).seed(seed).folder, workspace=runs.workspace,
                device=None if config.run.device == "auto" else config.run.device, bootstrap=bootstrap(config))


def task_code_identity(task: Task) -> str:
    """The code identity of the modules that compute a unit of ``task`` (its ``code``, else its ``run``'s
    module), with what they import from their own package."""
    roots = task.code or (task.run.__module__,)
    return code_identity(roots, {root.split(".")[0] for root in roots})


def unit_protocol(task: Task, unit: Unit) -> dict[str, Any]:
    """What ``protocol.json`` records: the task's settings and data identities, and its code identity."""
    return {**task.protocol(unit), "code": task_code_identity(task)}


def derived_identity(files: UnitFiles) -> dict[str, str | None]:
    """Content hashes of a unit's derived files, by name inside its folder (None: missing)."""
    return {str(path.relative_to(files.folder)): file_identity(path) for path in files.derived}


def results_identity(task: Task, unit: Unit, protocol: dict[str, Any]) -> dict[str, Any]:
    """What a unit's results must record: the task's protocol as it was evaluated, the bootstrap, and the
    hashes of its derived files as they are on disk now."""
    return {**{key: value for key, value in protocol.items() if key != "code"},
            "bootstrap": {"replicates": unit.bootstrap.replicates, "seed": unit.bootstrap.seed},
            "derived": derived_identity(task.files(unit.folder))}


def recorded_protocol(task: Task, files: UnitFiles) -> dict[str, Any] | None:
    """A unit's ``protocol.json`` as today's protocol names it: keys the task added since, at their old value
    (None: missing or unreadable)."""
    recorded = read_json(files.protocol)
    return None if recorded is None else {**task.recorded_before, **recorded}


def recorded_results(task: Task, results: dict[str, Any] | None, protocol: dict[str, Any]) -> dict[str, Any] | None:
    """The part of a unit's ``results.json`` that :func:`results_identity` describes (None: unreadable)."""
    if results is None:
        return None
    drawn = results.get("bootstrap") if isinstance(results.get("bootstrap"), dict) else {}
    return {**{key: results.get(key) for key in protocol if key != "code"},
            "bootstrap": {key: drawn.get(key) for key in ("replicates", "seed")},  # a task may add its own notes
            "derived": results.get("derived")}


def unit_reasons(config: Config, task: Task, model: str, method: str, seed: int) -> list[str]:
    """Why a (task, model, method, seed) unit's results are not what this config makes today: unfinished,
    a fused set another config made, other settings or data or code in its protocol, results of another
    protocol or bootstrap, or derived files whose content differs from what its results recorded (empty:
    fresh)."""
    what = f"{task.name} {model} {method} seed {seed}"
    try:
        unit = make_unit(config, task, model, method, seed)
        files = task.files(unit.folder)
        if not files.results.is_file():
            return [f"{what}: not finished ({files.results} missing)"]
        protocol = unit_protocol(task, unit)
    except (OSError, ValueError, FusionBenchError) as error:
        return [f"{what}: cannot be checked ({error})"]
    reasons = fingerprint_reasons(config, method)
    reasons += stale_reasons(recorded_protocol(task, files), protocol, f"{what} ({files.protocol})")
    return reasons + stale_reasons(recorded_results(task, read_json(files.results), protocol),
                                   results_identity(task, unit, protocol), f"{what} ({files.results})")


def summary_inputs(task: Task, runs: MethodRuns, seeds: list[int]) -> dict[str, str | None]:
    """What a method's across-seed summary is computed from: each seed's results, by content."""
    return {str(seed): file_identity(task.files(runs.seed(seed).folder).results) for seed in seeds}


def method_summary_reasons(config: Config, task: Task, model: str, method: str) -> list[str]:
    """Why a method's across-seed ``summary.json`` is not today's: a seed's unit is stale, or the summary
    was computed from other results than those on disk (empty: fresh)."""
    runs = run_layout(config).task(task.name).model(model).method(method)
    seeds = task.seeds(config.task_settings(task.name))
    reasons = [line for seed in seeds for line in unit_reasons(config, task, model, method, seed)]
    recorded = (read_json(runs.summary) or {}).get("results")
    return reasons + stale_reasons(recorded, summary_inputs(task, runs, seeds), f"{task.name} {model} {method} "
                                                                               f"({runs.summary})")


# --- comparisons -----------------------------------------------------------------------------------

COMPARE_CODE = ("pipelines.compare",)  # the tests and intervals, with the fusionbench statistics they call


@dataclass(frozen=True)
class CompareInputs:
    """What the compare stage may use for ``methods`` today, and the identity of its output."""

    units: dict[tuple[str, str], dict[str, list[UnitFiles]]]  # (task, model) -> method -> files per seed
    compared: dict[tuple[str, str], list[str]]                # (task, model) -> methods whose every seed is fresh
    measured: dict[str, list[Path]]                           # method -> its fresh per-image metric files
    stale: list[str]                                          # why each left-out unit or metrics file is stale
    identity: dict[str, Any]


def compare_inputs(config: Config, methods: list[str]) -> CompareInputs:
    """Every unit and metrics file of ``methods`` checked by the one rule: fresh ones are compared, stale ones
    left out with their reasons, missing ones left out; the identity names all of it, the settings, the
    compare code and the content hash of every file used (what the report checks the tables against)."""
    layout = run_layout(config)
    units, compared, stale = {}, {}, []
    for task, models in evaluated_tasks(config):
        seeds = task.seeds(config.task_settings(task.name))
        for model in models:
            runs = layout.task(task.name).model(model)
            units[task.name, model] = {m: [task.files(runs.method(m).seed(s).folder) for s in seeds] for m in methods}
            compared[task.name, model] = []
            for method in methods:
                if not all(files.results.is_file() for files in units[task.name, model][method]):
                    continue  # missing: listed as such by the compare stage
                reasons = [line for s in seeds for line in unit_reasons(config, task, model, method, s)]
                stale += reasons
                if not reasons:
                    compared[task.name, model].append(method)
    measured = {}
    for method in methods:
        files = layout.metrics.method(method)
        if not files.per_image.is_file():
            continue
        reasons = metrics_reasons(config, method)
        stale += reasons
        if not reasons:
            measured[method] = [files.per_image, *((files.entropy,) if config.metrics.entropy else ())]
    used = [path for key, found in compared.items() for m in found for f in units[key][m] for path in f.evidence]
    used += [path for paths in measured.values() for path in paths]
    stats = config.stats
    identity = {"settings": {"bootstrap": stats.bootstrap, "permutations": stats.permutations, "alpha": stats.alpha,
                             "seed": stats.seed, "references": list(config.report.compare_to)},
                "tasks": {task.name: {"models": models, "seeds": task.seeds(config.task_settings(task.name))}
                          for task, models in evaluated_tasks(config)},
                "methods": methods, "compared": {f"{t}/{m}": found for (t, m), found in compared.items()},
                "measured": list(measured), "code": code_identity(COMPARE_CODE, ("fusionbench",)),
                "inputs": {str(path): file_identity(path) for path in used}}
    return CompareInputs(units, compared, measured, stale, identity)


def compare_outputs(config: Config) -> dict[str, str | None]:
    """The compare stage's tables by name, by content (None: absent): its manifest records them."""
    files = run_layout(config).compare
    tables = [files.metrics, files.metric_intervals,
              *(path for task, _ in evaluated_tasks(config) for path in (files.task(task.name).intervals,
                                                                          files.task(task.name).tests))]
    return {path.name: file_identity(path) for path in tables}


def compare_reasons(config: Config) -> list[str]:
    """Why the compare stage's tables are not what it would write today from today's fresh inputs: missing
    or unfinished (no manifest), other settings, inputs or code, or tables whose content differs from what
    the manifest recorded (empty: fresh)."""
    path = run_layout(config).compare.manifest
    manifest = read_json(path) or {}
    recorded = manifest.get("fingerprint")
    if recorded is None:
        return [f"comparisons ({path}): missing (compare has not finished)"]
    what = f"comparisons ({path.parent})"
    return (stale_reasons(recorded, compare_inputs(config, list(recorded.get("methods") or [])).identity, what)
            + stale_reasons(manifest.get("outputs"), compare_outputs(config), what))
