"""The downstream stage: one model of a task per (method, seed), trained on a fused set, evaluated on test.

Works for every registered task (:mod:`fusionbench.tasks`): the task trains and writes its evidence; this
stage decides what to run and what to reuse, and summarises across seeds. Per (task, model, method, seed),
in ``run_layout(config).task(t).model(m).method(x).seed(k)`` = ``<run>/<task>/<model>/<method>/seed<k>/``::

    protocol.json   the settings, data identities and the code identity of the task's modules the run
                    started with: a rerun whose data or code changed (fused images, labels) starts the run
                    again; other changed settings stop with how to redo (:mod:`pipelines.freshness`)
    results.json    the task's scores with their image-bootstrap intervals (written last: marks done), the
                    protocol they were evaluated under and the content hashes of the derived files
                    (``derived``): a derived file that differs is removed and computed again
    results.csv     the same as one row
    ...             the task's evidence (detection: test_predictions.json, matches.npz, ...)

``<method>/summary.json`` holds the across-seed summary of every statistic the task declares (mean, sd,
n seeds, the interval of the two-level bootstrap over seeds and images, per-seed values), and
``<model>/summary.csv`` one row per method.
"""
from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from fusionbench.benchmark import Benchmark
from fusionbench.errors import FusionBenchError
from fusionbench.files import atomic_write_text, write_text_if_changed
from fusionbench.fused_set import check_fused_set, check_method_name
from fusionbench.identity import file_identity, read_json, stale_reasons
from fusionbench.layout import MethodRuns
from fusionbench.stats import Draws, over_drawn_seeds, percentile_interval
from fusionbench.tasks import Bootstrap, Task, Unit, get_model, get_task
from pipelines.config import run_layout
from pipelines.freshness import (
    bootstrap,
    derived_identity,
    make_unit,
    method_summary_reasons,
    recorded_protocol,
    recorded_results,
    results_identity,
    summary_inputs,
    unit_protocol,
    unit_reasons,
)
from pipelines.fusers import fingerprint_reasons
from pipelines.safe_delete import remove_inside
from pipelines.schema import Config

log = logging.getLogger(__name__)

LEVEL = 0.95


class DownstreamError(FusionBenchError):
    """A downstream run cannot start (old layout, changed settings, missing fused set)."""


def check_old_layouts(config: Config, task: Task, model: str, method: str) -> None:
    """Runs made by an earlier version are refused with the exact commands that move them into place."""
    root = run_layout(config).root
    for old, new in task.migrations:
        if (root / old).is_dir():
            raise DownstreamError(f"{root / old}: results of an earlier version's layout; move them to "
                                  f"{root / new} and rerun (nothing is trained again): "
                                  f"mkdir -p {(root / new).parent} && mv {root / old} {root / new}")
    method_runs = run_layout(config).task(task.name).model(model).method(method)
    out = method_runs.folder
    unit_files = task.files(out)  # a seed's files directly in the method folder: the layout before seeds
    if not (unit_files.protocol.is_file() or unit_files.results.is_file()):
        return
    legacy = sorted(p.name for p in out.iterdir() if not p.name.startswith("seed") and p != method_runs.summary)
    seed = json.loads(unit_files.protocol.read_text()).get("seed", 0) if unit_files.protocol.is_file() else 0
    raise DownstreamError(f"{out}: results in the old layout (one seed, files directly in the method folder); "
                          f"they belong to seed {seed}. Move them into their seed folder and rerun (the "
                          f"evidence is computed again from what is there, nothing is trained again): "
                          f"cd {out} && mkdir seed{seed} && mv {' '.join(legacy)} seed{seed}/ "
                          f"-- or rerun with --force to train every seed again")


def run_unit(config: Config, task_name: str, model: str, method: str, seed: int) -> dict[str, Any]:
    """One (task, model, method, seed): reuse its results while they are fresh (:mod:`pipelines.freshness`),
    repair what was derived from them, else run it."""
    task = get_task(task_name)
    check_method_name(method)
    unit = make_unit(config, task, model, method, seed)
    check_fused_set(unit.benchmark, method)
    check_fingerprint(config, method)
    protocol = unit_protocol(task, unit)
    files = task.files(unit.folder)
    if files.protocol.is_file():
        before = recorded_protocol(task, files)
        reasons = stale_reasons(before, protocol, str(files.protocol))
        changed = {k for k, v in protocol.items() if (before or {}).get(k) != v}
        if reasons and (before is None or changed <= {*task.input_keys, "code"}):  # data or code redone: so is the run
            remove_inside(unit.folder, unit.folder.parent, f"its inputs changed since it ran "
                                                           f"({', '.join(sorted(changed))}); running again: "
                                                           + "; ".join(reasons))
        elif reasons:
            raise DownstreamError(f"{unit.folder}: started with other settings; rerun with --force to start {model} "
                                  f"on {method} again:\n" + "\n".join(reasons))
    if files.results.is_file():
        reasons = repair(task, unit, protocol)
        if not reasons:
            log.info("%s %s %s seed %d: already done (%s); use --force to redo", task.name, model, method, seed,
                     files.results)
            return json.loads(files.results.read_text())
    atomic_write_text(files.protocol, json.dumps(protocol, indent=1))
    results = task.run(unit)
    recorded = {**results, **{k: v for k, v in protocol.items() if k != "code"},
                "derived": derived_identity(files)}  # what repair() and every consumer check
    atomic_write_text(files.results, json.dumps(recorded, indent=1))
    return recorded


def check_fingerprint(config: Config, method: str) -> None:
    """Refuse a fused set another configuration made (a shared benchmark fused with other options)."""
    reasons = fingerprint_reasons(config, method)
    if reasons:
        raise DownstreamError(f"fused set {method!r} is not the one this config makes (run `pipelines fuse "
                              f"--method {method}` to redo it):\n" + "\n".join(reasons))


def repair(task: Task, unit: Unit, protocol: dict[str, Any]) -> list[str]:
    """Why a unit's finished results are not fresh (empty: they are), after removing, with a warning
    naming each, what must be computed again: results of another protocol or unreadable ones, and every
    derived file from the first whose content differs from what the results recorded."""
    files = task.files(unit.folder)
    results = read_json(files.results)
    reasons = stale_reasons(recorded_results(task, results, protocol), results_identity(task, unit, protocol),
                            str(files.results))
    if not reasons:
        return []
    for line in reasons:
        log.warning("%s; computing it again", line)
    recorded = (results or {}).get("derived") or {}
    trusted = results is not None and all(results.get(k) == v for k, v in protocol.items() if k != "code")
    damaged = False
    for path in files.derived:
        damaged = damaged or not trusted or recorded.get(str(path.relative_to(unit.folder))) != file_identity(path)
        if damaged and path.exists():
            log.warning("%s: not what %s recorded; removed, computed again from what it derives from", path,
                        files.results.name)
            path.unlink()
    if not trusted:
        files.results.unlink()
    return reasons


def unit_done(config: Config, task_name: str, model: str, method: str, seed: int) -> bool:
    """What :func:`run_unit` would reuse (:func:`pipelines.freshness.unit_reasons` finds nothing stale): the
    SLURM submitter skips such a unit."""
    return not unit_reasons(config, get_task(task_name), model, method, seed)


def check_labels(config: Config, task: Task) -> None:
    """The benchmark has the labels the task learns from (boxes, masks), before anything is trained."""
    benchmark = Benchmark(run_layout(config).benchmark)
    missing = [kind for kind in task.labels if kind not in benchmark.label_kinds]
    if missing:
        raise DownstreamError(f"{benchmark.root}: {task.name} needs {' and '.join(missing)}, which this benchmark "
                              f"has none of (prepared from the {benchmark.manifest.get('source', {}).get('layout')} "
                              f"layout; it has: {', '.join(benchmark.label_kinds) or 'no labels'}); use a dataset "
                              f"with them or leave the task out (tasks.{task.name}=[])")


def run_method(config: Config, task_name: str, model: str, method: str, force: bool = False) -> dict[str, Any]:
    """Every seed of one method (finished seeds are skipped), then its across-seed summary."""
    task = get_task(task_name)
    check_method_name(method)  # before anything is deleted: the name is a folder inside the stage's own
    model_runs = run_layout(config).task(task.name).model(model)
    if force:
        check_fused_set(Benchmark(run_layout(config).benchmark), method)  # nothing is deleted for a missing set
        remove_inside(model_runs.method(method).folder, model_runs.folder, "--force: redo this method (every seed)")
    check_old_layouts(config, task, model, method)
    check_labels(config, task)
    seeds = task.seeds(config.task_settings(task.name))
    runs = [run_unit(config, task.name, model, method, seed) for seed in seeds]
    return write_method_summary(config, task, model, method, seeds, runs)


def write_method_summary(config: Config, task: Task, model: str, method: str, seeds: list[int],
                         runs: list[dict[str, Any]]) -> dict[str, Any]:
    """``<method>/summary.json``: per statistic the mean over seeds, sd, n and the interval of the
    two-level bootstrap (seeds, then images; the image bootstrap alone with one seed)."""
    method_runs: MethodRuns = run_layout(config).task(task.name).model(model).method(method)
    evidence = [task.statistics.load(method_runs.seed(seed).folder) for seed in seeds]
    settings = bootstrap(config)
    summary = {"task": task.name, "model": model, "model_summary": get_model(task.name, model).summary,
               "method": method, "seeds": seeds,
               "bootstrap": {"replicates": settings.replicates, "seed": settings.seed},
               "model_source": runs[0].get("model_source"),
               "intervals": "seeds and images" if len(seeds) > 1 else "images only (one seed: seed variance not measured)",
               "statistics": method_statistics(task, evidence, settings),
               "test_images": len(task.statistics.images(evidence[0])),
               "runs": {str(seed): {k: run.get(k) for k in task.summary_fields} for seed, run in zip(seeds, runs)},
               "results": summary_inputs(task, method_runs, seeds)}  # what it is computed from (freshness)
    write_text_if_changed(method_runs.summary, json.dumps(summary, indent=1))  # a rerun that skipped every seed keeps it
    return summary


def method_statistics(task: Task, seed_evidence: list[Any], settings: Bootstrap) -> dict[str, dict[str, Any] | None]:
    """Per statistic the task declares: per-seed values, mean, sd (n - 1; None with one seed), n seeds and the
    95% interval of the two-level bootstrap. None where the statistic is undefined (a class without ground truth)."""
    statistics = task.statistics
    names = [s.name for s in statistics.statistics(seed_evidence[0])]
    points = statistics.point_values(seed_evidence)
    draws = Draws.make(len(statistics.images(seed_evidence[0])), len(seed_evidence), settings.replicates, settings.seed)
    low, high = percentile_interval(over_drawn_seeds(statistics.replicate_values(seed_evidence, draws), draws), LEVEL)
    out: dict[str, dict[str, Any] | None] = {}
    for k, name in enumerate(names):
        column = points[:, k]
        if np.isnan(column).any():
            out[name] = None
            continue
        interval = None if np.isnan(low[k]) or np.isnan(high[k]) else [float(low[k]), float(high[k])]
        out[name] = {"mean": float(column.mean()), "sd": float(column.std(ddof=1)) if len(column) > 1 else None,
                     "n": int(len(column)), "ci95": interval, "per_seed": column.tolist()}
    return out


def write_model_summary(config: Config, task_name: str, model: str) -> Path:
    """``<model>/summary.csv``: one row per method whose across-seed summary exists, sorted by method: seeds,
    then per summary statistic (not per class) its mean, sd and interval, then the per-class means."""
    model_runs = run_layout(config).task(task_name).model(model)
    summaries = [json.loads(path.read_text()) for path in model_runs.method_summaries()]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if summaries:
        task = get_task(task_name)
        first = task.statistics.load(model_runs.method(summaries[0]["method"]).seed(summaries[0]["seeds"][0]).folder)
        declared = task.statistics.statistics(first)
        overall = [s.name for s in declared if s.per_class is None]
        per_class = [s for s in declared if s.per_class is not None]
        writer.writerow(["method", "seeds", *(f"{n}{part}" for n in overall for part in ("", "_sd", "_ci_low", "_ci_high")),
                         *(s.per_class for s in per_class)])
        for summary in summaries:
            statistics = summary["statistics"]
            cells = []
            for name in overall:
                entry = statistics.get(name) or {}
                interval = entry.get("ci95") or (None, None)
                cells += [_fmt(entry.get("mean")), _fmt(entry.get("sd")), _fmt(interval[0]), _fmt(interval[1])]
            writer.writerow([summary["method"], " ".join(map(str, summary["seeds"])), *cells,
                             *(_fmt((statistics.get(s.name) or {}).get("mean")) for s in per_class)])
    write_text_if_changed(model_runs.summary, buffer.getvalue())
    return model_runs.summary


def _fmt(value: float | None) -> str:
    """Empty where there is no value (a class absent from the test split), never a fake zero."""
    return "" if value is None else f"{value:.6f}"


def format_statistic(entry: dict[str, Any] | None, scale: float = 100.0) -> str:
    """'12.3 ± 1.1 (n=3) [9.8, 14.0]' (in % by default), or 'n/a' for an undefined statistic."""
    if entry is None:
        return "n/a"
    spread = f" ± {scale * entry['sd']:.1f}" if entry.get("sd") is not None else ""
    interval = f" [{scale * entry['ci95'][0]:.1f}, {scale * entry['ci95'][1]:.1f}]" if entry.get("ci95") else ""
    return f"{scale * entry['mean']:.1f}{spread} (n={entry['n']}){interval}"


def primary_summary(config: Config, task: Task, model: str, method: str) -> str:
    """'<label> <mean ± sd (n) [interval]>' of a method's primary statistic, or 'missing'."""
    path = run_layout(config).task(task.name).model(model).method(method).summary
    first = task.statistics.primary
    if not path.is_file():
        return f"{first.label} missing"
    stale = method_summary_reasons(config, task, model, method)
    if stale:
        return f"{first.label} stale ({stale[0]}{f'; and {len(stale) - 1} more' if len(stale) > 1 else ''})"
    return f"{first.label} {format_statistic(json.loads(path.read_text())['statistics'].get(first.name), first.scale)}"
