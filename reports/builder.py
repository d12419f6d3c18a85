"""Build ``index.html`` for one run from the files its stages wrote; self-contained and offline.

The page links only to files inside the report folder (``figures/*.png``, ``tables/*.csv|tex``).
Sections: run summary, mAP (with intervals, beside the paper's Table VI), per-class AP@50, comparisons
(forest plot, one sentence each), fusion metrics (with intervals and tests), decision-layer entropy,
qualitative grid, training curves. A result that does not exist yet is shown
as missing, never as 0. This module knows the stages only through their output files (and takes the
prepared benchmark as an object with the :class:`fusionbench.benchmark.Benchmark` interface).
"""
from __future__ import annotations

import io
import json
import logging
import os
import platform
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import cv2
import jinja2
import numpy as np
import pandas as pd
import yaml

from fusion.color import to_uint8
from fusion.metrics import REGISTRY
from fusion.provenance import package_versions
from fusionbench.benchmark import Benchmark
from fusionbench.files import atomic_write_text
from fusionbench.images import read_ir, read_vi
from fusionbench.layout import MANIFEST, FuserFiles, RunLayout
from fusionbench.tasks import FigureView, Model, Task
from reports import comparisons as stats
from reports import figures
from reports.tables import MISSING, Table

log = logging.getLogger(__name__)

PACKAGES = ("fusionbench", "torch", "torchvision", "ultralytics", "numpy", "opencv-python-headless",
            "scikit-image", "pycocotools", "pandas", "matplotlib", "mamba-ssm")
TEMPLATE = "report.html.j2"  # reports/templates/: the page, rendered into the layout's index
TILE_WIDTH = 400  # qualitative tiles are downscaled to this width at most


@dataclass(frozen=True)
class TaskInputs:
    """One downstream task of the run: its registry entry, the models the run evaluates, its settings."""

    task: Task
    models: list[Model]
    settings: Any
    seeds: list[int]


@dataclass
class RunInputs:
    """Where one run's results are."""

    name: str
    config: dict[str, Any]
    benchmark: Benchmark
    methods: list[str]
    layout: RunLayout  # every file the stages wrote, and where the report goes
    tasks: list[TaskInputs] = field(default_factory=list)
    qualitative: int = 4
    entropy_pairs: list[list[str]] = field(default_factory=list)
    # why a result is stale, by ``<task>/<model>/<method>``, ``metrics/<method>`` or ``compare``: shown as
    # stale with these lines, never with its numbers
    stale: dict[str, list[str]] = field(default_factory=dict)


def paper_table(name: str) -> pd.DataFrame:
    """Values published in the S4Fusion paper, shipped as ``reports/<name>.csv`` (``paper_fusion``: Tables I and IV)."""
    return pd.read_csv(io.StringIO((resources.files("reports") / f"{name}.csv").read_text()), dtype=str)


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _mtime(path: Path) -> str | None:
    if not path.exists():
        return None
    return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


# --- tables -----------------------------------------------------------------------------------

def _metric_columns(summary: pd.DataFrame | None) -> list[str]:
    """The metrics of the summary's convention, in its order."""
    return [] if summary is None else [c for c in summary.columns if c in REGISTRY]


def _has_metrics(summary: pd.DataFrame | None, method: str) -> bool:
    return summary is not None and method in summary.index and pd.notna(summary.at[method, "images"])


def fusion_table(run: RunInputs, summary: pd.DataFrame | None) -> Table:
    """Means of every fusion metric and the entropy mean / median per method, ranked each in the
    metric's own direction (:data:`fusion.metrics.REGISTRY`)."""
    metrics = _metric_columns(summary)
    columns = [*metrics, "entropy_mean", "entropy_median"]
    rows = {}
    for method in run.methods:
        found = _has_metrics(summary, method)
        rows[method] = [summary.at[method, c] if found and c in summary.columns else MISSING for c in columns]
        if found and pd.isna(summary.at[method, "entropy_mean"]):
            rows[method][-2:] = [MISSING, MISSING]
    ranked = {name: "max" if REGISTRY[name].direction == "higher" else "min" for name in metrics}
    conventions = sorted(set(summary["convention"].dropna())) if summary is not None else []
    lower = [name for name in metrics if REGISTRY[name].direction == "lower"]
    return Table("fusion_metrics", "Fusion quality on the test split (mean per image where defined)",
                 pd.DataFrame.from_dict(rows, orient="index", dtype=object, columns=columns),
                 ranked=ranked | {"entropy_mean": "min", "entropy_median": "min"}, digits=3,
                 note=f"Convention: {', '.join(conventions) or MISSING} (README: fusion metric conventions). "
                      f"Higher is better except {', '.join(lower + ['the decision-layer entropy'])} "
                      "(lower). How many images each mean covers: next table.")


def fusion_counts_table(run: RunInputs, summary: pd.DataFrame | None) -> Table:
    """Per method and metric, on how many images the metric is defined ("n of N"), with a first row
    giving each metric's direction; the note explains every metric undefined somewhere."""
    metrics = _metric_columns(summary)
    rows: dict[str, list[str]] = {"better": ["higher" if REGISTRY[m].direction == "higher" else "lower"
                                             for m in metrics]}
    undefined = []
    for method in run.methods:
        if not _has_metrics(summary, method):
            rows[method] = [MISSING] * len(metrics)
            continue
        images = int(summary.at[method, "images"])
        counts = [int(summary.at[method, f"{m}_n"]) for m in metrics]
        rows[method] = [f"{n} of {images}" for n in counts]
        undefined += [f"{method} {m}: {n} of {images} images ({REGISTRY[m].degenerate})"
                      for m, n in zip(metrics, counts) if n < images]
    return Table("fusion_metric_counts", "Fusion metrics: images on which each metric is defined",
                 pd.DataFrame.from_dict(rows, orient="index", dtype=object, columns=metrics),
                 note="Means average only these images; an undefined value (NaN) is counted here, never "
                      "taken as 0. " + ("Undefined: " + "; ".join(undefined) + "." if undefined
                                       else "Every metric is defined on every image."))


# --- figures ----------------------------------------------------------------------------------

def entropy_figures(run: RunInputs, figures_dir: Path) -> list[dict[str, str]]:
    """All methods overlaid, then each user-chosen pair (``report.entropy_pairs``)."""
    entropies = {}
    for method in run.methods:
        path = run.layout.metrics.method(method).entropy
        if path.is_file() and f"metrics/{method}" not in run.stale:
            entropies[method] = pd.read_csv(path)["entropy"].to_numpy(float)
    if not entropies:
        return []
    made = [{"src": "figures/entropy_all.png", "caption": "all methods"}]
    figures.entropy_histogram(entropies, figures_dir / "entropy_all.png", "Decision-layer entropy, all methods")
    for pair in run.entropy_pairs:
        name = "entropy_" + "_vs_".join(pair) + ".png"
        chosen = {m: entropies[m] for m in pair if m in entropies}
        if len(chosen) < len(pair):
            made.append({"src": None, "caption": f"{' vs '.join(pair)}: {MISSING} "
                                                 f"(no entropy for {', '.join(set(pair) - set(chosen))})"})
            continue
        figures.entropy_histogram(chosen, figures_dir / name, " vs ".join(pair))
        made.append({"src": f"figures/{name}", "caption": " vs ".join(pair)})
    return made


def _rgb(image: np.ndarray) -> np.ndarray:
    """An image as RGB uint8 (grey repeated)."""
    image = to_uint8(image)
    return np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image


def _shrink(image: np.ndarray | None) -> np.ndarray | None:
    """At most TILE_WIDTH wide (qualitative tiles)."""
    if image is None or image.shape[1] <= TILE_WIDTH:
        return image
    scale = TILE_WIDTH / image.shape[1]
    return cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def qualitative_stems(run: RunInputs) -> list[str]:
    """A few evenly spaced test images (``report.qualitative``)."""
    stems = run.benchmark.stems("test")
    if not stems or run.qualitative <= 0:
        return []
    return [stems[int(k)] for k in np.linspace(0, len(stems) - 1, min(run.qualitative, len(stems)))]


def figure_view(run: RunInputs, inputs: TaskInputs, model: Model, summaries: dict[str, dict | None]) -> FigureView:
    """What a task's figures may show of one model's runs: the first seed of each method with results."""
    model_runs = run.layout.task(inputs.task.name).model(model.name)
    folders = {m: model_runs.method(m).seed(inputs.seeds[0]).folder for m, s in summaries.items() if s}
    results = {m: _read_json(inputs.task.files(folder).results) or {} for m, folder in folders.items()}

    def sources(stem: str) -> list[tuple[str, np.ndarray]]:
        pair = run.benchmark.pair(stem)
        return [("IR", _rgb(read_ir(pair.ir))), ("VI", _rgb(read_vi(pair.vi)))]

    def fused(method: str, stem: str) -> np.ndarray | None:
        path = run.benchmark.fused_image(method, "test", stem)
        return _rgb(read_vi(path)) if path.is_file() else None

    return FigureView(task=inputs.task, model=model, settings=inputs.settings, benchmark=run.benchmark,
                      methods=run.methods, seeds=inputs.seeds, stems=qualitative_stems(run),
                      first_seed_folders=folders, first_seed_results=results, sources=sources, fused=fused)


def task_figures(view: FigureView, figures_dir: Path) -> list[dict[str, str]]:
    """Render what the task's figure hook declares: image grids, curves and captions."""
    if view.task.figures is None:
        return []
    made = []
    prefix = f"{view.task.name}_{view.model.name}"
    for index, item in enumerate(view.task.figures(view)):
        if item["kind"] == "caption":
            made.append({"src": None, "caption": item["text"]})
        elif item["kind"] == "grid":
            name = f"{prefix}_grid{index}.png"
            figures.qualitative_grid(item["title"], [(t, _shrink(tile)) for t, tile in item["tiles"]],
                                     figures_dir / name)
            made.append({"src": f"figures/{name}", "caption": item["title"]})
        elif item["kind"] == "curves":
            name = f"{prefix}_{item['name']}.png"
            figures.curves(item["series"], item["x"], figures_dir / name, item["title"])
            made.append({"src": f"figures/{name}", "caption": item["title"]})
        else:
            raise ValueError(f"task {view.task.name}: unknown figure kind {item['kind']!r}")
    return made


def training_figures(run: RunInputs, figures_dir: Path) -> list[dict[str, str]]:
    """Learned fusers' loss curves."""
    made = []
    for method in run.methods:
        series = _fusion_curves(run.layout.fusion(method))
        if series:
            name = f"fusion_{method}.png"
            figures.curves(series, "epoch", figures_dir / name, f"{method}: fusion training, mean per epoch")
            made.append({"src": f"figures/{name}", "caption": f"{method}: training losses (mean per epoch) "
                                                             "and validation losses"})
    return made


def _fusion_curves(files: FuserFiles) -> dict[str, pd.DataFrame]:
    """A learned fuser's per-step training losses averaged per epoch, and its per-epoch validation losses."""
    series = {}
    if files.loss.is_file():
        loss = pd.read_csv(files.loss)
        series["train"] = loss.drop(columns=[c for c in ("step",) if c in loss]).groupby("epoch", as_index=False).mean()
    if files.val.is_file():
        series["validation"] = pd.read_csv(files.val)
    return series


# --- run summary ------------------------------------------------------------------------------

def run_summary(run: RunInputs, summary_path: Path) -> dict[str, Any]:
    manifest = run.benchmark.manifest
    split = manifest.get("split", {})
    counts = manifest.get("counts", {})
    classes = list(run.benchmark.classes)
    count_rows = [[name, c.get("pairs", ""), c.get("background", ""),
                   *(c.get("boxes", {}).get(k, "") for k in classes)] for name, c in counts.items()]
    leakage = manifest.get("leakage", {})
    leak_rows = [[name, v.get("test", ""), v.get("near_duplicates_in_train", ""),
                  "yes" if leakage.get("chosen") == name else ""]
                 for name, v in leakage.items() if isinstance(v, dict)]
    config = run.config
    fused = {m: _read_json(run.benchmark.fused_dir(m) / MANIFEST) or {} for m in run.methods}  # read once
    seeds = {"run.seed": config.get("run", {}).get("seed"), "split seed (manifest)": split.get("seed"),
             **{f"{t.task.section}.seeds": ", ".join(map(str, t.seeds)) for t in run.tasks}}
    dates = {"report built": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
             "benchmark prepared": _mtime(run.layout.benchmark_manifest),
             "metrics summary": _mtime(summary_path)}
    return {
        "config": yaml.safe_dump(config, sort_keys=False),
        "seeds": seeds,
        "split": {"strategy": split.get("strategy", MISSING), "ratios": split.get("ratios", MISSING),
                  "scenes": split.get("scenes", MISSING), "leakage threshold": leakage.get("threshold", MISSING)},
        "split_lists": sorted(p.name for p in run.layout.pages.split_lists.glob("*") if p.is_file()),
        "counts_header": ["split", "pairs", "background", *classes],
        "counts": count_rows,
        "leakage": leak_rows,
        "versions": package_versions(PACKAGES, missing="not installed"),
        "hardware": _hardware(),
        "numerics": fused_numerics(fused),
        "networks": fused_networks(fused),
        "dates": {k: v or MISSING for k, v in dates.items()},
    }


def _hardware() -> dict[str, str]:
    import torch

    found = {"platform": platform.platform(), "cpu cores": str(os.cpu_count())}
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    found["gpu"] = ", ".join(torch.cuda.get_device_name(k) for k in range(count)) or "none visible"
    return found


def fused_numerics(manifests: dict[str, dict]) -> dict[str, str]:
    """How each learned method's fused set was computed (device, selective-scan backend, TF32, AMP),
    as its fuse manifest recorded it: what moves GPU numbers without any change of code or weights."""
    found = {}
    for method, manifest in manifests.items():
        options = manifest.get("fingerprint", {}).get("options", {})
        if "runtime" in options:
            found[method] = ", ".join(f"{key} {value}" for key, value in
                                      {**options["runtime"], "amp": options.get("amp")}.items() if value is not None)
    return found


def fused_networks(manifests: dict[str, dict]) -> dict[str, str]:
    """Each learned method's network as its fuse manifest recorded it: the parameter count and every
    architecture argument that differs from the method's own (e.g. the sample's smaller models), so a
    reader never takes a shrunken network for the published one."""
    found = {}
    for method, manifest in manifests.items():
        if network := manifest.get("network"):
            changed = ", ".join(f"{key} {v['used']} (registered: {v['method']})" for key, v in network["changed"].items())
            found[method] = f"{network['parameters']:,} parameters; " + (
                f"architecture changed from the registry entry: {changed}" if changed else "the registered architecture")
    return found


# --- the page ---------------------------------------------------------------------------------

def task_sections(run: RunInputs, compared: stats.Comparisons, figures_dir: Path,
                  tables_dir: Path) -> list[dict[str, Any]]:
    """Per (task, model): its tables, comparisons and figures, for the page."""
    sections = []
    for inputs in run.tasks:
        task = inputs.task
        for model in inputs.models:
            model_runs = run.layout.task(task.name).model(model.name)
            summaries = {m: None if f"{task.name}/{model.name}/{m}" in run.stale else _read_json(model_runs.method(m).summary)
                         for m in run.methods}
            present = next((s for s in summaries.values() if s), None)
            declared = (task.statistics.statistics(task.statistics.load(model_runs.method(present["method"]).seed(
                present["seeds"][0]).folder)) if present else [task.statistics.primary])
            main, per_class = stats.task_tables(task, model, run.methods, summaries, compared, declared)
            sections.append({
                "id": f"{task.name}-{model.name}", "task": task.title, "model": model.summary,
                "main": _rendered(main, tables_dir),
                "per_class": _rendered(per_class, tables_dir) if per_class else None,
                "comparisons": stats.task_comparisons(task, model, compared, figures_dir),
                "figures": task_figures(figure_view(run, inputs, model, summaries), figures_dir),
                "missing": [m for m, r in summaries.items() if r is None],
            })
    return sections


def _rendered(table: Any, tables_dir: Path) -> dict[str, Any]:
    return {"table": table, "rows": table.rows(), "files": table.write(tables_dir)}


def build_report(run: RunInputs) -> Path:
    """Write the report's index page with its figures and tables; returns the HTML path."""
    pages = run.layout.pages
    figures_dir, tables_dir = pages.figures, pages.tables
    figures_dir.mkdir(parents=True, exist_ok=True)
    tables_dir.mkdir(parents=True, exist_ok=True)
    names = [t.task.name for t in run.tasks]
    compared = stats.Comparisons.none(names) if "compare" in run.stale else stats.Comparisons.read(run.layout.compare, names)
    summary_path = run.layout.metrics.summary
    summary = pd.read_csv(summary_path).set_index("method") if summary_path.is_file() else None
    if summary is not None:
        summary = summary.drop(index=[m for m in summary.index if f"metrics/{m}" in run.stale])
    perception = set(summary["perception"].dropna()) if summary is not None else set()

    fusion_intervals = stats.fusion_interval_table(run.methods, compared)
    tables = [fusion_table(run, summary), fusion_counts_table(run, summary), *([fusion_intervals] if fusion_intervals else [])]
    context = {
        "name": run.name,
        "methods": run.methods,
        "sections": task_sections(run, compared, figures_dir, tables_dir),
        "run": run_summary(run, summary_path),
        "tables": {t.name: _rendered(t, tables_dir) for t in tables},
        "entropy": entropy_figures(run, figures_dir),
        "random_perception": "random" in perception,
        "perception": ", ".join(sorted(perception)) or MISSING,
        "training": training_figures(run, figures_dir),
        "paper_fusion": paper_table("paper_fusion").to_dict("records"),
        "metric_sentences": stats.metric_sentences(compared),
        "statistics_method": stats.method_note(compared),
        "stale": [line for reasons in run.stale.values() for line in reasons],
    }
    environment = jinja2.Environment(loader=jinja2.PackageLoader("reports", "templates"),
                                     autoescape=True, undefined=jinja2.StrictUndefined)
    html = environment.get_template(TEMPLATE).render(**context)
    path = pages.index
    atomic_write_text(path, html)
    log.info("report written to %s", path)
    return path
