"""Build ``index.html`` for one run from the files its stages wrote; self-contained and offline.

The page links only to files inside the report folder (``figures/*.png``, ``tables/*.csv|tex``).
Sections: run summary, mAP (with intervals, beside the paper's Table VI), per-class AP@50, comparisons
(forest plot, one sentence each), fusion metrics (with intervals and tests), decision-layer entropy,
qualitative grid, training curves. A result that does not exist yet is shown
as missing, never as 0. This module knows the stages only through their output files (and takes the
prepared benchmark as an object with the :class:`pipelines.benchmark.Benchmark` interface).
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

from detection.yolo import TRAIN_LOG
from fusion.color import to_uint8
from fusion.metrics import REGISTRY
from fusion.provenance import package_versions
from fusionbench.files import atomic_write_text
from fusionbench.images import read_ir, read_vi
from fusionbench.layout import MANIFEST, FuserFiles, RunLayout, SeedFiles
from reports import comparisons as stats
from reports import figures
from reports.tables import MISSING, Table

log = logging.getLogger(__name__)

PACKAGES = ("fusionbench", "torch", "torchvision", "ultralytics", "numpy", "opencv-python-headless",
            "scikit-image", "pycocotools", "pandas", "matplotlib", "mamba-ssm")
TEMPLATE = "report.html.j2"  # reports/templates/: the page, rendered into the layout's index
TILE_WIDTH = 400  # qualitative tiles are downscaled to this width at most


@dataclass
class RunInputs:
    """Where one run's results are; ``benchmark`` is a :class:`pipelines.benchmark.Benchmark`."""

    name: str
    config: dict[str, Any]
    benchmark: Any
    methods: list[str]
    layout: RunLayout  # every file the stages wrote, and where the report goes
    qualitative: int = 4
    entropy_pairs: list[list[str]] = field(default_factory=list)
    score_threshold: float = 0.25
    seeds: list[int] = field(default_factory=lambda: [0])  # detect.seeds: <detect>/<method>/seed<k>/

    def first_seed(self, method: str) -> SeedFiles:
        """The first seed's detector run: predictions and curves are shown per method from it."""
        return self.layout.detect.method(method).seed(self.seeds[0])


def paper_table(name: str) -> pd.DataFrame:
    """Values published in the S4Fusion paper, shipped as ``reports/<name>.csv``: ``paper_map50``
    (Table VI, YOLOv5s mAP@50 % on M3FD, by lower-case method) and ``paper_fusion`` (Tables I and IV)."""
    return pd.read_csv(io.StringIO((resources.files("reports") / f"{name}.csv").read_text()), dtype=str)


def paper_map50() -> dict[str, float]:
    frame = paper_table("paper_map50")
    return dict(zip(frame["method"], frame["map50"].astype(float)))


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
        if path.is_file():
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


def _ground_truth(coco_path: Path) -> tuple[dict[str, list], dict[int, str]]:
    coco = json.loads(coco_path.read_text())
    by_id = {image["id"]: Path(image["file_name"]).stem for image in coco["images"]}
    boxes: dict[str, list] = {stem: [] for stem in by_id.values()}
    for annotation in coco["annotations"]:
        boxes[by_id[annotation["image_id"]]].append((annotation["bbox"], annotation["category_id"]))
    return boxes, {c["id"]: c["name"] for c in coco["categories"]}


def _tile(image: np.ndarray, boxes: list, colour, names: dict[int, str]) -> np.ndarray:
    """RGB uint8 tile at most TILE_WIDTH wide, with boxes [(xywh, category, score or None)]."""
    scale = min(1.0, TILE_WIDTH / image.shape[1])
    if scale < 1.0:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    scaled = [[v * scale for v in box] for box, _, _ in boxes]
    labels = [names.get(cat, str(cat)) + (f" {score:.2f}" if score is not None else "") for _, cat, score in boxes]
    return figures.draw_boxes(image, scaled, colour, labels)


def qualitative_figures(run: RunInputs, results: dict[str, dict | None], figures_dir: Path) -> list[str]:
    """IR | VI | each method for a few evenly spaced test images; ground truth in green on the
    sources, the method's predictions (score >= threshold) in red on the fused images."""
    stems = run.benchmark.stems("test")
    if not stems or run.qualitative <= 0:
        return []
    chosen = [stems[int(k)] for k in np.linspace(0, len(stems) - 1, min(run.qualitative, len(stems)))]
    truth, names = _ground_truth(run.benchmark.coco_path("test"))
    position = {stem: k + 1 for k, stem in enumerate(stems)}
    predictions: dict[str, dict[int, list]] = {}
    for method in run.methods:
        path = run.first_seed(method).predictions
        if results.get(method) is not None and path.is_file():
            per_image: dict[int, list] = {}
            for det in json.loads(path.read_text()):
                if det["score"] >= run.score_threshold:
                    per_image.setdefault(det["image_id"], []).append((det["bbox"], det["category_id"], det["score"]))
            predictions[method] = per_image
    made = []
    for stem in chosen:
        pair = run.benchmark.pair(stem)
        gt = [(box, cat, None) for box, cat in truth.get(stem, [])]
        ir = np.repeat(to_uint8(read_ir(pair.ir))[..., None], 3, axis=2)
        vi = to_uint8(read_vi(pair.vi))
        vi = np.repeat(vi[..., None], 3, axis=2) if vi.ndim == 2 else vi
        tiles = [("IR + ground truth", _tile(ir, gt, figures.GT_COLOUR, names)),
                 ("VI + ground truth", _tile(vi, gt, figures.GT_COLOUR, names))]
        for method in run.methods:
            path = run.benchmark.fused_image(method, "test", stem)
            if not path.is_file():
                tiles.append((method, None))
                continue
            fused = to_uint8(read_vi(path))
            fused = np.repeat(fused[..., None], 3, axis=2) if fused.ndim == 2 else fused
            shown = predictions.get(method, {}).get(position[stem], [])
            title = method if method in predictions else f"{method} (not detected)"
            tiles.append((title, _tile(fused, shown, figures.PRED_COLOUR, names)))
        figures.qualitative_grid(f"test image {stem}", tiles, figures_dir / f"qualitative_{stem}.png")
        made.append(f"figures/qualitative_{stem}.png")
    return made


def training_figures(run: RunInputs, results: dict[str, dict | None], figures_dir: Path) -> list[dict[str, str]]:
    """Detector curves (val mAP@50 of the selection, ultralytics' results.csv) and fuser loss curves."""
    made = []
    first = {m: r["runs"].get(str(run.seeds[0]), {}) for m, r in results.items() if r}
    selection = {m: pd.DataFrame({"epoch": np.arange(1, len(r["val_map50_per_epoch"]) + 1),
                                  "val mAP@50 (selection)": r["val_map50_per_epoch"]})
                 for m, r in first.items() if r.get("val_map50_per_epoch")}
    ultralytics = {m: frame for m in first if (frame := _ultralytics_log(run.first_seed(m).train)) is not None}
    seed = f" (seed {run.seeds[0]})"
    for key, series, caption in (("detector_selection", selection, "validation mAP@50 used to select the epoch" + seed),
                                 ("detector_training", ultralytics, f"ultralytics training log ({TRAIN_LOG})" + seed)):
        if series:
            figures.curves(series, "epoch", figures_dir / f"{key}.png", f"YOLOv5s: {caption}")
            made.append({"src": f"figures/{key}.png", "caption": f"Detector: {caption}"})
    for method in run.methods:
        series = _fusion_curves(run.layout.fusion(method))
        if series:
            name = f"fusion_{method}.png"
            figures.curves(series, "epoch", figures_dir / name, f"{method}: fusion training, mean per epoch")
            made.append({"src": f"figures/{name}", "caption": f"{method}: training losses (mean per epoch) "
                                                             "and validation losses"})
    return made


def _ultralytics_log(train: Path) -> pd.DataFrame | None:
    """The per-epoch log of the ultralytics training folder ``train``, without learning-rate and time columns."""
    for path in sorted(train.glob("**/" + TRAIN_LOG)):
        frame = pd.read_csv(path)
        frame.columns = [c.strip() for c in frame.columns]
        if "epoch" in frame:
            return frame.drop(columns=[c for c in frame.columns if c.startswith("lr/") or c == "time"])
    return None


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

def run_summary(run: RunInputs, results: dict[str, dict | None], summary_path: Path) -> dict[str, Any]:
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
             "detect.seeds": ", ".join(map(str, run.seeds))}
    dates = {"report built": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
             "benchmark prepared": _mtime(run.layout.benchmark_manifest),
             "metrics summary": _mtime(summary_path)}
    dates.update({f"detection {m}": _mtime(run.layout.detect.method(m).summary) for m, r in results.items() if r})
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

def build_report(run: RunInputs) -> Path:
    """Write the report's index page with its figures and tables; returns the HTML path."""
    pages = run.layout.pages
    figures_dir, tables_dir = pages.figures, pages.tables
    figures_dir.mkdir(parents=True, exist_ok=True)
    tables_dir.mkdir(parents=True, exist_ok=True)
    results = {m: _read_json(run.layout.detect.method(m).summary) for m in run.methods}
    compared = stats.Comparisons.read(run.layout.compare)
    summary_path = run.layout.metrics.summary
    summary = pd.read_csv(summary_path).set_index("method") if summary_path.is_file() else None
    perception = set(summary["perception"].dropna()) if summary is not None else set()

    fusion_intervals = stats.fusion_interval_table(run.methods, compared)
    tables = [*stats.detection_tables(run.methods, list(run.benchmark.classes), results, compared, paper_map50()),
              fusion_table(run, summary), fusion_counts_table(run, summary),
              *([fusion_intervals] if fusion_intervals else [])]
    rendered = [{"table": t, "rows": t.rows(), "files": t.write(tables_dir)} for t in tables]
    context = {
        "name": run.name,
        "methods": run.methods,
        "run": run_summary(run, results, summary_path),
        "tables": {item["table"].name: item for item in rendered},
        "entropy": entropy_figures(run, figures_dir),
        "random_perception": "random" in perception,
        "perception": ", ".join(sorted(perception)) or MISSING,
        "qualitative": qualitative_figures(run, results, figures_dir),
        "score_threshold": run.score_threshold,
        "training": training_figures(run, results, figures_dir),
        "missing_detection": [m for m, r in results.items() if r is None],
        "paper_fusion": paper_table("paper_fusion").to_dict("records"),
        "comparisons": stats.detection_comparisons(compared, figures_dir),
        "metric_sentences": stats.metric_sentences(compared),
        "statistics_method": stats.method_note(compared, run.seeds),
    }
    environment = jinja2.Environment(loader=jinja2.PackageLoader("reports", "templates"),
                                     autoescape=True, undefined=jinja2.StrictUndefined)
    html = environment.get_template(TEMPLATE).render(**context)
    path = pages.index
    atomic_write_text(path, html)
    log.info("report written to %s", path)
    return path
