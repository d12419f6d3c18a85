"""The compare stage: intervals for every ranked number and paired tests between methods.

Reads what the downstream stage and metrics wrote (each task's per-image evidence of every (model,
method, seed); per-image fusion metrics) and writes, under ``run_layout(config).compare`` (names:
:class:`fusionbench.layout.CompareFiles`)::

    <task>_intervals.csv     per model, method and statistic the task declares: mean over seeds, sd, n seeds,
                             95% interval (bootstrap over seeds and images)
    <task>.csv               one row per (model, method A, reference B): the task's primary statistic's delta
                             (mean over seeds of A - B), its paired-bootstrap 95% interval, permutation p,
                             Holm-adjusted p (family: one model's comparisons), significant
    metric_intervals.csv     per method and fusion metric: mean per image, 95% bootstrap interval, images
    metrics.csv              per fusion metric and (A, B): mean per-image difference, interval, Wilcoxon p,
                             Holm-adjusted p (family: one metric's comparisons), significant
    manifest.json            the identity of its inputs (settings, which units and metrics were fresh, their
                             content hashes, the compare code) and of its tables (written last: marks done)

References (``report.compare_to``): method names, and ``best`` for the method with the best mean (the
task's primary statistic; per metric, the best mean in the metric's direction). Each method is compared
with each reference; a pair already compared the other way round is not repeated. "Significant" means
the Holm-adjusted p is below ``stats.alpha`` and the interval excludes 0. Everything is deterministic
for a given ``stats.seed``, so a compare stage killed and rerun writes identical files; a rerun whose
inputs and settings are unchanged does nothing.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fusion.metrics import REGISTRY, direction
from fusionbench.errors import FusionBenchError
from fusionbench.files import atomic_write_text
from fusionbench.identity import read_identity, stale_reasons
from fusionbench.stats import (
    Draws,
    holm,
    mean_interval,
    over_drawn_seeds,
    percentile_interval,
    permutation_p_value,
    wilcoxon_paired,
)
from fusionbench.tasks import Task
from pipelines.config import evaluated_tasks, run_layout
from pipelines.freshness import compare_inputs, compare_outputs, compare_reasons
from pipelines.schema import Config

log = logging.getLogger(__name__)

BEST = "best"
LEVEL = 0.95
ENTROPY = "entropy"  # decision-layer entropy (entropy.csv): lower is better, a more confident ResNet50


class CompareError(FusionBenchError):
    """The comparisons cannot be made from the run's files or settings."""


@dataclass(frozen=True)
class Settings:
    bootstrap: int
    permutations: int
    alpha: float
    seed: int
    references: tuple[str, ...]

    @classmethod
    def from_config(cls, config: Config) -> "Settings":
        stats = config.stats
        return cls(stats.bootstrap, stats.permutations, stats.alpha, stats.seed, tuple(config.report.compare_to))


def run_compare(config: Config, methods: list[str]) -> Path:
    """Write the compare stage's files for ``methods``: those whose units (every seed) and metrics are fresh
    (:func:`pipelines.freshness.compare_inputs`); missing and stale ones are left out and named."""
    settings = Settings.from_config(config)
    out = run_layout(config).compare
    evaluated = evaluated_tasks(config)
    inputs = compare_inputs(config, methods)
    fingerprint = inputs.identity
    manifest = out.manifest
    if not (stale_reasons(read_identity(manifest, "fingerprint"), fingerprint, str(manifest))
            + stale_reasons(read_identity(manifest, "outputs"), compare_outputs(config), str(manifest))):
        log.info("compare: up to date (%s)", manifest)
        return out.folder
    evidence, complete, metric_files, measured = inputs.units, inputs.compared, inputs.measured, list(inputs.measured)
    for line in inputs.stale:
        log.warning("compare: left out, stale: %s", line)
    missing = {f"{task}/{model}": [m for m in methods if m not in found] for (task, model), found in complete.items()}
    missing["metrics"] = [m for m in methods if m not in measured]
    for stage, names in missing.items():
        if names:
            log.warning("compare: no fresh %s results for %s: left out of the comparisons", stage, ", ".join(names))

    references: dict[str, Any] = {}
    manifest.unlink(missing_ok=True)  # until the new one is written, the folder is not done
    for task, models in evaluated:
        files = out.task(task.name)
        tables = [task_comparisons(task, model, {m: [task.statistics.load(f.folder) for f in evidence[task.name, model][m]]
                                                  for m in complete[task.name, model]}, settings)
                  for model in models if complete[task.name, model]]
        if not tables:
            for path in (files.intervals, files.tests):
                path.unlink(missing_ok=True)  # no stale table from an earlier run beside the new manifest
            continue
        atomic_write_text(files.intervals, pd.concat([t[0] for t in tables], ignore_index=True).to_csv(index=False))
        atomic_write_text(files.tests, pd.concat([t[1] for t in tables], ignore_index=True).to_csv(index=False))
        references[task.name] = {model: t[2] for model, t in zip([m for m in models if complete[task.name, m]], tables)}
    if measured:
        values = per_image_metrics({m: metric_files[m] for m in measured})
        intervals, rows, references["metrics"] = metric_comparisons(values, settings)
        atomic_write_text(out.metric_intervals, intervals.to_csv(index=False))
        atomic_write_text(out.metrics, rows.to_csv(index=False))
    else:
        for path in (out.metrics, out.metric_intervals):
            path.unlink(missing_ok=True)
    atomic_write_text(manifest, json.dumps({"fingerprint": fingerprint, "outputs": compare_outputs(config),
                                            "missing": missing, "stale": inputs.stale, "references": references,
                                            "level": LEVEL}, indent=1))
    return out.folder


def comparison_pairs(methods: list[str], references: tuple[str, ...], best: str | None) -> list[tuple[str, str]]:
    """(method, reference) for each reference present (``best`` resolved), each unordered pair once."""
    pairs: list[tuple[str, str]] = []
    seen: set[frozenset[str]] = set()
    for reference in references:
        name = best if reference == BEST else reference
        if name not in methods:
            log.warning("compare: reference %r has no values here (no results, or undefined): no comparisons with it", reference)
            continue
        for method in methods:
            key = frozenset((method, name))
            if method != name and key not in seen:
                seen.add(key)
                pairs.append((method, name))
    return pairs


TASK_COLUMNS = ("model", "method", "reference", "statistic", "delta", "ci_low", "ci_high", "p", "seeds", "images",
                "permutations", "p_holm", "significant")
METRIC_COLUMNS = ("metric", "method", "reference", "delta", "ci_low", "ci_high", "p", "images", "better", "p_holm",
                  "significant")


def _finish(rows: list[dict[str, Any]], alpha: float, columns: tuple[str, ...]) -> pd.DataFrame:
    """Holm over ``rows`` (one family) and the significance flag, in ``columns`` (a header even when empty)."""
    frame = pd.DataFrame(rows, columns=[c for c in columns if c not in ("p_holm", "significant")])
    frame["p_holm"] = holm(frame["p"].to_numpy(float))
    excludes_zero = (frame["ci_low"] > 0) | (frame["ci_high"] < 0)
    frame["significant"] = (frame["p_holm"] < alpha) & excludes_zero
    return frame[list(columns)]


def check_same_test_set(task: Task, runs: dict[str, list[Any]]) -> None:
    """Every run of a comparison must hold the same test images, and the same statistics, in the same order."""
    named = {f"{m} seed {k}": evidence for m, seeds in runs.items() for k, evidence in enumerate(seeds)}
    first_name, first = next(iter(named.items()))
    images, names = task.statistics.images(first), [s.name for s in task.statistics.statistics(first)]
    for name, evidence in named.items():
        if task.statistics.images(evidence) != images or [s.name for s in task.statistics.statistics(evidence)] != names:
            raise CompareError(f"{name} and {first_name} were evaluated on different test images or classes "
                               f"({len(task.statistics.images(evidence))} vs {len(images)} images): rerun {task.name} "
                               "on one benchmark")


def task_comparisons(task: Task, model: str, runs: dict[str, list[Any]],
                     settings: Settings) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]:
    """Per-method intervals of every statistic of one model's runs, and the primary statistic's comparisons
    with the references (paired bootstrap, paired permutation test, Holm over this model's family)."""
    statistics = task.statistics
    check_same_test_set(task, runs)
    first = next(iter(runs.values()))
    declared = statistics.statistics(first[0])
    n_images = len(statistics.images(first[0]))
    draws = Draws.make(n_images, len(first), settings.bootstrap, settings.seed)
    points, averaged, interval_rows = {}, {}, []
    for method, seeds in runs.items():
        points[method] = statistics.point_values(seeds)
        averaged[method] = over_drawn_seeds(statistics.replicate_values(seeds, draws), draws)
        low, high = percentile_interval(averaged[method], LEVEL)
        for k, statistic in enumerate(declared):
            column = points[method][:, k]
            interval_rows.append({"model": model, "method": method, "statistic": statistic.name, "mean": column.mean(),
                                  "sd": column.std(ddof=1) if len(column) > 1 else np.nan, "n_seeds": len(column),
                                  "ci_low": low[k], "ci_high": high[k]})
    sign = 1.0 if statistics.primary.direction == "higher" else -1.0
    best = max(points, key=lambda m: sign * points[m][:, 0].mean())
    rows = []
    for index, (method, reference) in enumerate(comparison_pairs(list(runs), settings.references, best)):
        delta = float(points[method][:, 0].mean() - points[reference][:, 0].mean())
        low, high = percentile_interval(averaged[method][:, 0] - averaged[reference][:, 0], LEVEL)
        rng = np.random.default_rng([settings.seed, index])
        permuted = statistics.permuted_deltas(runs[method], runs[reference], settings.permutations, rng)
        rows.append({"model": model, "method": method, "reference": reference, "statistic": statistics.primary.name,
                     "delta": delta, "ci_low": float(low), "ci_high": float(high),
                     "p": permutation_p_value(delta, permuted), "seeds": len(first), "images": n_images,
                     "permutations": settings.permutations})
    return pd.DataFrame(interval_rows), _finish(rows, settings.alpha, TASK_COLUMNS), {BEST: best}


def per_image_metrics(files: dict[str, list[Path]]) -> dict[str, pd.DataFrame]:
    """Per method: one row per test image (index: stem), one column per metric (and ``entropy``)."""
    values = {}
    for method, paths in files.items():
        frames = [pd.read_csv(p, index_col="stem") for p in paths]
        values[method] = pd.concat(frames, axis=1).sort_index()
    stems = {m: tuple(frame.index) for m, frame in values.items()}
    reference = next(iter(stems))
    for method, found in stems.items():
        if found != stems[reference]:
            raise CompareError(f"metrics of {method} and {reference} cover different test images "
                               f"({len(found)} vs {len(stems[reference])}): rerun `pipelines metrics`")
    return values


def metric_comparisons(values: dict[str, pd.DataFrame],
                       settings: Settings) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]:
    """Per method and metric: mean with its bootstrap interval; per metric: Wilcoxon comparisons, Holm."""
    found = {c for frame in values.values() for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])}
    metrics = [name for name in REGISTRY if name in found] + sorted(found - set(REGISTRY))
    interval_rows, rows, best_of = [], [], {}
    for m_index, metric in enumerate(metrics):
        present = [m for m in values if metric in values[m]]
        means = {}
        for k, method in enumerate(present):
            rng = np.random.default_rng([settings.seed, m_index, k])
            mean, low, high, n = mean_interval(values[method][metric].to_numpy(float), rng, settings.bootstrap)
            means[method] = mean
            interval_rows.append({"metric": metric, "method": method, "mean": mean, "ci_low": low, "ci_high": high,
                                  "images": n})
        defined = {m: v for m, v in means.items() if not np.isnan(v)}
        if len(defined) < len(means):
            log.info("compare: %s is undefined for %s (e.g. SCD of a source image): not compared", metric,
                     ", ".join(sorted(set(means) - set(defined))))
        better = better_direction(metric)
        best = (min if better == "lower" else max)(defined, key=defined.get) if defined else None
        best_of[metric] = best
        family = []
        for index, (method, reference) in enumerate(comparison_pairs(list(defined), settings.references, best)):
            rng = np.random.default_rng([settings.seed, 1000 + m_index, index])
            test = wilcoxon_paired(values[method][metric].to_numpy(float), values[reference][metric].to_numpy(float),
                                   rng, settings.bootstrap, LEVEL)
            family.append({"metric": metric, "method": method, "reference": reference, "delta": test.delta,
                           "ci_low": test.ci_low, "ci_high": test.ci_high, "p": test.p, "images": test.pairs,
                           "better": better})
        rows.append(_finish(family, settings.alpha, METRIC_COLUMNS))
    frame = pd.concat([r for r in rows if not r.empty] or [rows[0]], ignore_index=True)
    return pd.DataFrame(interval_rows), frame, best_of


def better_direction(metric: str) -> str:
    """'higher' or 'lower' (the metric registry's direction; entropy: lower): which mean is "best"."""
    if metric == ENTROPY:
        return "lower"
    if metric not in REGISTRY:
        raise CompareError(f"per-image metrics column {metric!r}: not a registered fusion metric, so no direction")
    return direction(metric)


def significance_sentences(config: Config) -> list[str]:
    """Per (task, model): one line on what the comparisons of its primary statistic found, saying plainly
    when nothing differs at this test size."""
    files = run_layout(config).compare
    stale = compare_reasons(config)
    if stale:  # never sentences from tables of other inputs, settings or code
        return [f"comparisons not shown: {line}" for line in stale]
    manifest = json.loads(files.manifest.read_text())
    alpha = manifest.get("fingerprint", {}).get("settings", {}).get("alpha", config.stats.alpha)
    lines = []
    for task, models in evaluated_tasks(config):
        path = files.task(task.name).tests
        if not path.is_file():
            lines.append(f"{task.name}: comparisons missing (the compare stage has not written {path.name})")
            continue
        table = pd.read_csv(path)
        label = task.statistics.primary.label
        for model in models:
            rows = table[table["model"] == model]
            if rows.empty:
                lines.append(f"{task.name} {model}: no comparisons (fewer than two methods with results)")
                continue
            size = f"{int(rows['images'].iloc[0])} test images, {int(rows['seeds'].iloc[0])} seed(s)"
            found = rows[rows["significant"].astype(bool)]
            head = f"{task.name} {model} ({label}, permutation test, Holm, alpha {alpha}"
            if found.empty:
                references = ", ".join(dict.fromkeys(rows["reference"]))
                lines.append(f"{head}): no method differs significantly from {references} at this test size ({size})")
                continue
            scale = task.statistics.primary.scale
            listed = "; ".join(f"{r.method} vs {r.reference} {scale * r.delta:+.1f} [{scale * r.ci_low:+.1f}, "
                               f"{scale * r.ci_high:+.1f}]" for r in found.itertuples())
            lines.append(f"{head}; {size}): significant: {listed}; the other {len(rows) - len(found)} of {len(rows)} "
                         "are not")
    return lines
