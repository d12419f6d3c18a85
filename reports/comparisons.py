"""The report's statistics: mAP tables with intervals, the comparisons (table, forest plot, one sentence
each), the fusion metrics with intervals, and significance-aware best marks.

Reads what the detect stage (``<detect>/<method>/summary.json``) and the compare stage (``<compare>/*.csv``,
``manifest.json``) wrote. A best mark is given only where the difference to the next method is significant
in the compare stage's tests (Holm-adjusted); a column without such a test gets no marks at all.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from fusionbench.layout import CompareFiles
from reports import figures
from reports.tables import MISSING, Table

MAP_LABEL = "mAP@50"


@dataclass
class Comparisons:
    """The compare stage's files (None where not written)."""

    detection_intervals: pd.DataFrame | None
    detection: pd.DataFrame | None
    metric_intervals: pd.DataFrame | None
    metrics: pd.DataFrame | None
    manifest: dict[str, Any] | None

    @classmethod
    def read(cls, files: CompareFiles) -> "Comparisons":
        def table(path: Path) -> pd.DataFrame | None:
            return pd.read_csv(path) if path.is_file() else None

        manifest = files.manifest
        return cls(table(files.detection_intervals), table(files.detection), table(files.metric_intervals),
                   table(files.metrics), json.loads(manifest.read_text()) if manifest.is_file() else None)


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def _interval(low: Any, high: Any, scale: float = 100.0, digits: int = 1, signed: bool = False) -> str:
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return "n/a"
    form = f"{{:{'+' if signed else ''}.{digits}f}}"
    return f"[{form.format(scale * low)}, {form.format(scale * high)}]"


def _minus(text: str) -> str:
    """Typographic minus signs for prose (tables keep ASCII, so CSV and LaTeX stay plain)."""
    return text.replace("-", "−")


def significant_marks(means: dict[str, float], higher_is_better: bool, tests: pd.DataFrame | None) -> dict[str, int]:
    """Rank 1 for the best method only if it differs significantly from the second; rank 2 for the second
    only if it differs significantly from the third (``tests``: method, reference, significant)."""
    order = sorted((m for m, v in means.items() if not pd.isna(v)), key=means.get, reverse=higher_is_better)
    if tests is None or tests.empty:
        return {}
    significant = {frozenset((r.method, r.reference)) for r in tests.itertuples() if bool(r.significant)}
    marks = {}
    for rank in (1, 2):
        if len(order) > rank and frozenset(order[rank - 1:rank + 1]) in significant:
            marks[order[rank - 1]] = rank
    return marks


def detection_tables(methods: list[str], classes: list[str], summaries: dict[str, dict | None],
                     comparisons: Comparisons, paper: dict[str, float]) -> tuple[Table, Table]:
    """mAP@50 and mAP@50:95 with mean ± sd (n seeds) and 95% intervals beside the paper's Table VI; AP@50 per
    class as 'mean [interval]'. In %."""
    rows, per_class, means = {}, {}, {}
    for method in methods:
        summary = summaries.get(method)
        paper_value = paper.get(method.lower(), "not in paper")
        if summary is None:
            rows[method] = [MISSING] * 5 + [paper_value, MISSING, MISSING]
            per_class[method] = [MISSING] * len(classes)
            continue
        statistics = summary["statistics"]
        map50, map50_95 = statistics.get("map50"), statistics.get("map50_95")
        means[method] = map50["mean"] if map50 else float("nan")
        epochs = ", ".join(str(run.get("selected_epoch", "")) for run in summary.get("runs", {}).values())
        rows[method] = [100 * map50["mean"] if map50 else "n/a", _spread(map50), _interval(*(map50 or {}).get("ci95") or (None, None)),
                        100 * map50_95["mean"] if map50_95 else "n/a",
                        _interval(*(map50_95 or {}).get("ci95") or (None, None)), paper_value, epochs,
                        str(summary.get("model_source", ""))]
        per_class[method] = [_class_cell(statistics.get(f"ap50/{name}")) for name in classes]
    columns = [MAP_LABEL, "± sd (n seeds)", "95% interval", "mAP@50:95", "mAP@50:95 95% interval",
               "paper mAP@50 (Table VI, M3FD)", "epoch per seed", "detector"]
    marks = significant_marks(means, True, comparisons.detection)
    summary_table = Table(
        "map50", "Detection: YOLOv5s mAP on the test split (%)",
        pd.DataFrame.from_dict(rows, orient="index", dtype=object, columns=columns),
        ranked={MAP_LABEL: "max"}, marks_given={MAP_LABEL: marks}, digits=1,
        note="Mean over detector seeds ± sample standard deviation (n seeds); 95% interval from the bootstrap "
             "over test images and seeds. Bold / underlined only where the difference to the next method is "
             "significant (paired permutation test, Holm); no mark means the ranking is not established. The "
             "paper's values are for the full M3FD protocol; compare them only with a run of the paper config.")
    classwise = Table("per_class_ap50", "Detection: AP@50 per class on the test split (%, mean [95% interval])",
                      pd.DataFrame.from_dict(per_class, orient="index", dtype=object, columns=classes), digits=1,
                      note="Not ranked: per-class differences are not tested. n/a: no ground truth of the class in "
                           "the test split.")
    return summary_table, classwise


def _spread(entry: dict | None) -> str:
    if not entry:
        return "n/a"
    return f"± {100 * entry['sd']:.1f} (n={entry['n']})" if entry.get("sd") is not None else f"n={entry['n']}"


def _class_cell(entry: dict | None) -> str:
    if not entry:
        return "n/a"
    return f"{_pct(entry['mean'])} {_interval(*(entry.get('ci95') or (None, None)))}"


def sentence(row: Any, statistic: str, scale: float = 100.0, digits: int = 1) -> str:
    """'s4fusion vs vi: +1.2 mAP@50 [−0.4, +2.8], p = 0.21 after Holm: not significant'."""
    verdict = "significant" if bool(row.significant) else "not significant"
    delta = _minus(f"{scale * row.delta:+.{digits}f}")
    interval = _minus(_interval(row.ci_low, row.ci_high, scale, digits, signed=True))
    return f"{row.method} vs {row.reference}: {delta} {statistic} {interval}, p = {_p(row.p_holm)} after Holm: {verdict}"


def _p(value: float) -> str:
    return "n/a" if pd.isna(value) else (f"{value:.2g}" if value >= 0.001 else "< 0.001")


def detection_comparisons(comparisons: Comparisons, figures_dir: Path) -> dict[str, Any]:
    """The comparison table rows, sentences, forest plot and the plain statement of what was found."""
    rows = comparisons.detection
    if rows is None or rows.empty:
        return {"rows": [], "sentences": [], "forest": None, "statement": None}
    figures.forest(rows, figures_dir / "forest_map50.png", "mAP@50 difference (percentage points), 95% interval")
    size = f"{int(rows['images'].iloc[0])} test images, {int(rows['seeds'].iloc[0])} detector seed(s)"
    found = rows[rows["significant"].astype(bool)]
    references = " or ".join(dict.fromkeys(rows["reference"]))
    statement = (f"No method differs significantly from {references} at this test size ({size}): the mAP ranking "
                 "of this run is not evidence that one method helps the detector more than another."
                 if found.empty else
                 f"{len(found)} of {len(rows)} comparisons are significant ({size}); the others are not established.")
    table_rows = [[r.method, r.reference, f"{100 * r.delta:+.1f}", _interval(r.ci_low, r.ci_high, signed=True),
                   _p(r.p), _p(r.p_holm), "yes" if bool(r.significant) else "no"] for r in rows.itertuples()]
    return {"rows": table_rows, "sentences": [sentence(r, MAP_LABEL) for r in rows.itertuples()],
            "forest": "figures/forest_map50.png", "statement": statement}


def method_note(comparisons: Comparisons, seeds: list[int]) -> str:
    """How the intervals and tests were made (B, permutations, alpha, seeds, RNG seed)."""
    if comparisons.manifest is None:
        return f"{MISSING}: the compare stage has not run (pipelines compare)."
    settings = comparisons.manifest["fingerprint"]["settings"]
    seed_note = ("" if len(seeds) > 1 else
                 " With one detector seed the intervals cover test-image sampling only: seed variance was not measured.")
    return (f"Intervals: percentile bootstrap, {settings['bootstrap']} replicates drawing the test images (and the "
            f"detector seeds {seeds}) with replacement, RNG seed {settings['seed']}. mAP@50 differences: paired "
            f"bootstrap (same images and seeds for both methods) and a paired permutation test ({settings['permutations']} "
            f"permutations swapping the two methods' detections per image and seed). Fusion metrics: Wilcoxon "
            f"signed-rank test on per-image differences. p-values Holm-adjusted per family (mAP@50; each metric); "
            f"significant = adjusted p < {settings['alpha']} and the interval excludes 0. References: "
            f"{', '.join(settings['references'])}.{seed_note}")


def fusion_interval_table(methods: list[str], comparisons: Comparisons) -> Table | None:
    """Every fusion metric as 'mean [95% interval]' per method, best marks only where significant."""
    intervals = comparisons.metric_intervals
    if intervals is None or intervals.empty:
        return None
    metrics = list(dict.fromkeys(intervals["metric"]))
    cells: dict[str, list[str]] = {m: [MISSING] * len(metrics) for m in methods}
    marks: dict[str, dict[str, int]] = {}
    digits = 3
    for j, metric in enumerate(metrics):
        part = intervals[intervals["metric"] == metric]
        for r in part.itertuples():
            if r.method in cells:
                cells[r.method][j] = ("n/a" if pd.isna(r.mean) else
                                      f"{r.mean:.{digits}f} {_interval(r.ci_low, r.ci_high, 1.0, digits)}")
        tests = None if comparisons.metrics is None else comparisons.metrics[comparisons.metrics["metric"] == metric]
        higher = tests is None or tests.empty or tests["better"].iloc[0] != "lower"
        marks[metric] = significant_marks(dict(zip(part["method"], part["mean"])), higher, tests)
    return Table("fusion_metric_intervals", "Fusion metrics: mean per image [95% interval]",
                 pd.DataFrame.from_dict(cells, orient="index", dtype=object, columns=metrics),
                 ranked={m: "max" for m in metrics}, marks_given=marks, digits=digits,
                 note="Bold / underlined only where the method differs significantly from the next one "
                      "(Wilcoxon signed-rank, Holm per metric); n/a: undefined for that method.")


def metric_sentences(comparisons: Comparisons) -> list[str]:
    """One sentence per fusion-metric comparison."""
    rows = comparisons.metrics
    if rows is None or rows.empty:
        return []
    return [sentence(r, r.metric, scale=1.0, digits=3) for r in rows.itertuples()]
