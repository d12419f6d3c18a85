"""The compare stage: intervals for every ranked number and paired tests between methods.

Reads what detect and metrics wrote (per-image matches of every (method, seed); per-image fusion metrics)
and writes, under ``run_layout(config).compare`` (names: :class:`fusionbench.layout.CompareFiles`)::

    detection_intervals.csv  per method and statistic (mAP@50, mAP@50:95, AP@50 per class): mean over seeds,
                             sd, n seeds, 95% interval (bootstrap over seeds and images)
    detection.csv            one row per (method A, reference B): mAP@50 delta (mean over seeds of A - B),
                             its paired-bootstrap 95% interval, permutation p, Holm-adjusted p, significant
    metric_intervals.csv     per method and fusion metric: mean per image, 95% bootstrap interval, images
    metrics.csv              per fusion metric and (A, B): mean per-image difference, interval, Wilcoxon p,
                             Holm-adjusted p (family: one metric's comparisons), significant
    manifest.json            settings, the references used, the inputs' fingerprint (written last: marks done)

References (``report.compare_to``): method names, and ``best`` for the method with the highest mean
(mAP@50; per metric, the best mean in the metric's direction). Each method is compared with each
reference; a pair already compared the other way round is not repeated. "Significant" means the
Holm-adjusted p is below ``stats.alpha`` and the interval excludes 0. Everything is deterministic for a
given ``stats.seed``, so a compare stage killed and rerun writes identical files; a rerun whose inputs and
settings are unchanged does nothing.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from detection import map_statistics, matches
from fusion.metrics import REGISTRY, direction
from fusionbench.errors import FusionBenchError
from fusionbench.files import atomic_write_text, sha256_file
from fusionbench.stats import holm, mean_interval, percentile_interval, permutation_p_value, wilcoxon_paired
from pipelines.config import run_layout
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
    """Write the compare stage's files for ``methods`` (those with results; others are listed as missing)."""
    settings = Settings.from_config(config)
    seeds = list(config.detect.seeds)
    layout = run_layout(config)
    out = layout.compare
    match_files = {m: [layout.detect.method(m).seed(s).matches for s in seeds] for m in methods}
    detected = [m for m in methods if all(p.is_file() for p in match_files[m])]
    metric_files = {m: [p for p in (layout.metrics.method(m).per_image, layout.metrics.method(m).entropy) if p.is_file()]
                    for m in methods}
    measured = [m for m in methods if metric_files[m]]
    inputs = [p for m in detected for p in match_files[m]] + [p for m in measured for p in metric_files[m]]
    fingerprint = {"settings": settings.__dict__ | {"references": list(settings.references)}, "seeds": seeds,
                   "methods": methods, "inputs": {str(p): sha256_file(p) for p in inputs}}
    manifest = out.manifest
    if manifest.is_file() and json.loads(manifest.read_text()).get("fingerprint") == fingerprint:
        log.info("compare: up to date (%s)", manifest)
        return out.folder
    missing = {"detection": [m for m in methods if m not in detected], "metrics": [m for m in methods if m not in measured]}
    for stage, names in missing.items():
        if names:
            log.warning("compare: no %s results for %s: left out of the comparisons", stage, ", ".join(names))

    references: dict[str, Any] = {}
    manifest.unlink(missing_ok=True)  # until the new one is written, the folder is not done
    for paths, present in (((out.detection, out.detection_intervals), detected),
                           ((out.metrics, out.metric_intervals), measured)):
        for path in paths if not present else ():
            path.unlink(missing_ok=True)  # no stale table from an earlier run beside the new manifest
    if detected:
        runs = {m: [matches.load(p) for p in match_files[m]] for m in detected}
        intervals, rows, references["detection"] = detection_comparisons(runs, settings)
        atomic_write_text(out.detection_intervals, intervals.to_csv(index=False))
        atomic_write_text(out.detection, rows.to_csv(index=False))
    if measured:
        values = per_image_metrics({m: metric_files[m] for m in measured})
        intervals, rows, references["metrics"] = metric_comparisons(values, settings)
        atomic_write_text(out.metric_intervals, intervals.to_csv(index=False))
        atomic_write_text(out.metrics, rows.to_csv(index=False))
    atomic_write_text(manifest, json.dumps({"fingerprint": fingerprint, "missing": missing, "references": references,
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


DETECTION_COLUMNS = ("method", "reference", "statistic", "delta", "ci_low", "ci_high", "p", "seeds", "images",
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


def detection_comparisons(runs: dict[str, list[matches.Matches]],
                          settings: Settings) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]:
    """Per-method intervals of every detection statistic, and the mAP@50 comparisons with the references."""
    first = next(iter(runs.values()))
    map_statistics.check_same_test_set({f"{m} seed {k}": run for m, seeds in runs.items() for k, run in enumerate(seeds)})
    names = map_statistics.statistic_names(first[0].classes)
    draws = map_statistics.Draws.make(len(first[0].images), len(first), settings.bootstrap, settings.seed)
    points, averaged, interval_rows = {}, {}, []
    for method, seeds in runs.items():
        points[method] = map_statistics.point_values(seeds)
        averaged[method] = map_statistics.over_drawn_seeds(map_statistics.replicate_values(seeds, draws), draws)
        low, high = percentile_interval(averaged[method], LEVEL)
        for k, name in enumerate(names):
            column = points[method][:, k]
            interval_rows.append({"method": method, "statistic": name, "mean": column.mean(),
                                  "sd": column.std(ddof=1) if len(column) > 1 else np.nan, "n_seeds": len(column),
                                  "ci_low": low[k], "ci_high": high[k]})
    best = max(points, key=lambda m: points[m][:, 0].mean())
    rows = []
    for index, (method, reference) in enumerate(comparison_pairs(list(runs), settings.references, best)):
        delta = float(points[method][:, 0].mean() - points[reference][:, 0].mean())
        low, high = percentile_interval(averaged[method][:, 0] - averaged[reference][:, 0], LEVEL)
        rng = np.random.default_rng([settings.seed, index])
        permuted = map_statistics.permuted_deltas(runs[method], runs[reference], settings.permutations, rng)
        rows.append({"method": method, "reference": reference, "statistic": map_statistics.MAP50, "delta": delta,
                     "ci_low": float(low), "ci_high": float(high), "p": permutation_p_value(delta, permuted),
                     "seeds": len(first), "images": len(first[0].images), "permutations": settings.permutations})
    return pd.DataFrame(interval_rows), _finish(rows, settings.alpha, DETECTION_COLUMNS), {BEST: best}


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


def format_statistic(entry: dict[str, Any] | None) -> str:
    """'12.3 ± 1.1 (n=3) [9.8, 14.0]' in %, or 'n/a' for a statistic without ground truth."""
    if entry is None:
        return "n/a"
    spread = f" ± {100 * entry['sd']:.1f}" if entry.get("sd") is not None else ""
    interval = f" [{100 * entry['ci95'][0]:.1f}, {100 * entry['ci95'][1]:.1f}]" if entry.get("ci95") else ""
    return f"{100 * entry['mean']:.1f}{spread} (n={entry['n']}){interval}"


def significance_sentence(config: Config) -> str:
    """One line on what the mAP@50 comparisons found, saying plainly when nothing differs at this test size."""
    files = run_layout(config).compare
    path = files.detection
    if not path.is_file():
        return f"comparisons: missing (the compare stage has not written {path.name})"
    rows = pd.read_csv(path)
    if rows.empty:
        return "comparisons: none (fewer than two methods with detection results)"
    manifest = json.loads(files.manifest.read_text()) if files.manifest.is_file() else {}
    alpha = manifest.get("fingerprint", {}).get("settings", {}).get("alpha", config.stats.alpha)
    size = f"{int(rows['images'].iloc[0])} test images, {int(rows['seeds'].iloc[0])} seed(s)"
    found = rows[rows["significant"].astype(bool)]
    references = ", ".join(dict.fromkeys(rows["reference"]))
    if found.empty:
        return (f"comparisons (mAP@50, permutation test, Holm, alpha {alpha}): no method differs significantly from "
                f"{references} at this test size ({size})")
    listed = "; ".join(f"{r.method} vs {r.reference} {100 * r.delta:+.1f} [{100 * r.ci_low:+.1f}, {100 * r.ci_high:+.1f}]"
                       for r in found.itertuples())
    return (f"comparisons (mAP@50, permutation test, Holm, alpha {alpha}; {size}): significant: {listed}; "
            f"the other {len(rows) - len(found)} of {len(rows)} are not")
