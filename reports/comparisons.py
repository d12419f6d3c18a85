"""The report's statistics: each task's result tables with intervals, its comparisons (table, forest plot,
one sentence each), the fusion metrics with intervals, and significance-aware best marks.

Reads what the downstream stage (``<run>/<task>/<model>/<method>/summary.json``) and the compare stage
(``<compare>/*.csv``, ``manifest.json``) wrote; a task is known only through what it declares
(:class:`fusionbench.tasks.Task`). A best mark is given only where the difference to the next method is
significant in the compare stage's tests (Holm-adjusted); a column without such a test gets no marks at all.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from fusionbench.layout import CompareFiles
from fusionbench.tasks import Model, Statistic, Task
from reports import figures
from reports.tables import MISSING, Table


@dataclass
class Comparisons:
    """The compare stage's files (None where not written): per task its intervals and tests, the metrics'."""

    tasks: dict[str, tuple[pd.DataFrame | None, pd.DataFrame | None]]
    metric_intervals: pd.DataFrame | None
    metrics: pd.DataFrame | None
    manifest: dict[str, Any] | None

    @classmethod
    def read(cls, files: CompareFiles, task_names: list[str]) -> "Comparisons":
        def table(path: Path) -> pd.DataFrame | None:
            return pd.read_csv(path) if path.is_file() else None

        manifest = files.manifest
        return cls({name: (table(files.task(name).intervals), table(files.task(name).tests)) for name in task_names},
                   table(files.metric_intervals), table(files.metrics),
                   json.loads(manifest.read_text()) if manifest.is_file() else None)

    @classmethod
    def none(cls, task_names: list[str]) -> "Comparisons":
        """No comparisons: the compare stage's files are stale or unfinished (the page says why)."""
        return cls({name: (None, None) for name in task_names}, None, None, None)

    def tests(self, task: str, model: str) -> pd.DataFrame | None:
        """The paired tests of one model of a task (None when the compare stage has none)."""
        tests = self.tasks.get(task, (None, None))[1]
        return None if tests is None else tests[tests["model"] == model].reset_index(drop=True)


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


def task_tables(task: Task, model: Model, methods: list[str], summaries: dict[str, dict | None],
                comparisons: Comparisons, statistics: list[Statistic]) -> tuple[Table, Table | None]:
    """The task's summary statistics for one model (the primary one with mean ± sd (n seeds), each with its
    95% interval, beside published values where the task has them), and its per-class statistics as
    'mean [interval]'. Values scaled as each statistic says (% for AP and IoU)."""
    first = statistics[0]
    overall = [s for s in statistics if s.per_class is None]
    per_class = [s for s in statistics if s.per_class is not None]
    published = task.published(model.name) if task.published else None
    columns = [first.label, "± sd (n seeds)", "95% interval",
               *(label for s in overall[1:] for label in (s.label, f"{s.label} 95% interval")),
               *([task.published_label] if published else []), "model source"]
    rows, classwise, means = {}, {}, {}
    for method in methods:
        summary = summaries.get(method)
        if summary is None:
            rows[method] = [MISSING] * (len(columns) - (2 if published else 1)) + (
                [published.get(method.lower(), "not published")] if published else []) + [MISSING]
            classwise[method] = [MISSING] * len(per_class)
            continue
        values = summary["statistics"]
        entry = values.get(first.name)
        means[method] = entry["mean"] if entry else float("nan")
        cells = [first.scale * entry["mean"] if entry else "n/a", _spread(entry, first.scale),
                 _interval(*(entry or {}).get("ci95") or (None, None), first.scale)]
        for statistic in overall[1:]:
            other = values.get(statistic.name)
            cells += [statistic.scale * other["mean"] if other else "n/a",
                      _interval(*(other or {}).get("ci95") or (None, None), statistic.scale)]
        if published:
            cells.append(published.get(method.lower(), "not published"))
        rows[method] = [*cells, str(summary.get("model_source", ""))]
        classwise[method] = [_class_cell(values.get(s.name), s.scale) for s in per_class]
    marks = significant_marks(means, first.direction == "higher", comparisons.tests(task.name, model.name))
    key = f"{task.name}_{model.name}"
    summary_table = Table(
        key, f"{task.title}: {model.summary}, test split ({first.label} and more)",
        pd.DataFrame.from_dict(rows, orient="index", dtype=object, columns=columns),
        ranked={first.label: "max" if first.direction == "higher" else "min"}, marks_given={first.label: marks},
        digits=1,
        note="Mean over seeds ± sample standard deviation (n seeds); 95% interval from the bootstrap over test "
             "images and seeds. Bold / underlined only where the difference to the next method is significant "
             "(paired permutation test, Holm); no mark means the ranking is not established."
             + (" Published values come from another protocol and data size; compare them only with a run of the "
                "paper config." if published else ""))
    classes = None
    if per_class:
        classes = Table(f"{key}_per_class", f"{task.title}: {model.summary}, per class (mean [95% interval])",
                        pd.DataFrame.from_dict(classwise, orient="index", dtype=object,
                                               columns=[s.per_class for s in per_class]), digits=1,
                        note="Not ranked: per-class differences are not tested. n/a: no ground truth of the class "
                             "in the test split.")
    return summary_table, classes


def _spread(entry: dict | None, scale: float) -> str:
    if not entry:
        return "n/a"
    return f"± {scale * entry['sd']:.1f} (n={entry['n']})" if entry.get("sd") is not None else f"n={entry['n']}"


def _class_cell(entry: dict | None, scale: float) -> str:
    if not entry:
        return "n/a"
    return f"{scale * entry['mean']:.1f} {_interval(*(entry.get('ci95') or (None, None)), scale)}"


def sentence(row: Any, statistic: str, scale: float = 100.0, digits: int = 1) -> str:
    """'s4fusion vs vi: +1.2 mAP@50 [−0.4, +2.8], p = 0.21 after Holm: not significant'."""
    verdict = "significant" if bool(row.significant) else "not significant"
    delta = _minus(f"{scale * row.delta:+.{digits}f}")
    interval = _minus(_interval(row.ci_low, row.ci_high, scale, digits, signed=True))
    return f"{row.method} vs {row.reference}: {delta} {statistic} {interval}, p = {_p(row.p_holm)} after Holm: {verdict}"


def _p(value: float) -> str:
    return "n/a" if pd.isna(value) else (f"{value:.2g}" if value >= 0.001 else "< 0.001")


def task_comparisons(task: Task, model: Model, comparisons: Comparisons, figures_dir: Path) -> dict[str, Any]:
    """One model's comparison table rows, sentences (all, and the significant ones), forest plot and the plain
    statement of what was found."""
    rows = comparisons.tests(task.name, model.name)
    first = task.statistics.primary
    if rows is None or rows.empty:
        return {"rows": [], "sentences": [], "significant": [], "forest": None, "statement": None, "label": first.label}
    name = f"forest_{task.name}_{model.name}.png"
    figures.forest(rows, figures_dir / name, f"{first.label} difference ({model.summary}), 95% interval",
                   scale=first.scale)
    size = f"{int(rows['images'].iloc[0])} test images, {int(rows['seeds'].iloc[0])} seed(s)"
    found = rows[rows["significant"].astype(bool)]
    references = " or ".join(dict.fromkeys(rows["reference"]))
    statement = (f"No method differs significantly from {references} at this test size ({size}): the "
                 f"{first.label} ranking of this run is not evidence that one method helps {model.summary} more "
                 "than another." if found.empty else
                 f"{len(found)} of {len(rows)} comparisons are significant ({size}); the others are not established.")
    table_rows = [[r.method, r.reference, f"{first.scale * r.delta:+.1f}",
                   _interval(r.ci_low, r.ci_high, first.scale, signed=True), _p(r.p), _p(r.p_holm),
                   "yes" if bool(r.significant) else "no"] for r in rows.itertuples()]
    return {"rows": table_rows, "sentences": [sentence(r, first.label, first.scale) for r in rows.itertuples()],
            "significant": [sentence(r, first.label, first.scale) for r in found.itertuples()],
            "forest": f"figures/{name}", "statement": statement, "label": first.label}


def method_note(comparisons: Comparisons) -> str:
    """How the intervals and tests were made (B, permutations, alpha, seeds, RNG seed)."""
    if comparisons.manifest is None:
        return f"{MISSING}: the compare stage has not run (pipelines compare)."
    fingerprint = comparisons.manifest["fingerprint"]
    settings = fingerprint["settings"]
    seeds = {name: entry["seeds"] for name, entry in fingerprint.get("tasks", {}).items()}
    one_seed = [name for name, found in seeds.items() if len(found) == 1]
    seed_note = (f" With one seed ({', '.join(one_seed)}) the intervals cover test-image sampling only: seed "
                 "variance was not measured." if one_seed else "")
    listed = "; ".join(f"{name}: {found}" for name, found in seeds.items())
    return (f"Intervals: percentile bootstrap, {settings['bootstrap']} replicates drawing the test images (and the "
            f"seeds, {listed}) with replacement, RNG seed {settings['seed']}. Differences of each task's primary "
            f"statistic: paired bootstrap (same images and seeds for both methods) and a paired permutation test "
            f"({settings['permutations']} permutations swapping the two methods' evidence per image and seed). "
            f"Fusion metrics: Wilcoxon signed-rank test on per-image differences. p-values Holm-adjusted per family "
            f"(each model's comparisons; each metric); significant = adjusted p < {settings['alpha']} and the "
            f"interval excludes 0. References: {', '.join(settings['references'])}.{seed_note}")


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
