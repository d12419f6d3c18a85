"""The detect stage: YOLOv5s on one method's fused set per detector seed, test mAP with pycocotools,
per-image matches and intervals for the report.

Every method is trained with the same seeds, hyper-parameters, split and image size (all from the config's
``detect`` section), so the only difference between two rows of the table is the fused images; every seed
in ``detect.seeds`` gives one detector per method, so the table can say how much the training run moves
a number.

Outputs per (method, seed) in ``run_layout(config).detect.method(m).seed(k)`` = ``<run>/detect/<method>/seed<k>/``
(names: :class:`fusionbench.layout.SeedFiles`)::

    protocol.json           the settings the run started with; a rerun with other settings stops (use --force)
    data.yaml               ultralytics dataset file (absolute paths into <bench>/fused/<method>)
    train/                  ultralytics training folder: results.csv (per epoch), weights/{last,best,best_map50}.pt
    ultralytics_test/       ultralytics' own validation of the selected weights on the test split
    test_predictions.json   COCO detections on the test split (image ids and category ids of coco/test.json)
    matches.npz             per test image and class: scores, true positive flags per IoU, ground-truth counts
    results.json            mAP@50, mAP@50:95, AP@50 per class, each with its image-bootstrap 95% interval
                            (``map50_ci95: [low, high]``), selection, settings (written last: marks done)
    results.csv             the same as one table row

``<run>/detect/<method>/summary.json`` holds the across-seed summary (mean, sd, n seeds, and the interval
of the two-level bootstrap over seeds and images), and ``<run>/detect/summary.csv`` one row per method.

Test evaluation: predictions at ``detect.conf`` (0.001, so the precision-recall curve is complete) and
NMS IoU ``detect.iou`` (0.6, YOLOv5's val.py setting); pycocotools keeps the 100 best per image.
Ultralytics' own test mAP@50 of the same weights is recorded as well; detection/README.md explains
why the two differ slightly (detections kept per image, and how the precision envelope is integrated).
"""
from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from detection import coco_eval, map_statistics, matches, yolo
from detection.offline import install_amp_check_weights, use_offline_ultralytics
from fusionbench.errors import FusionBenchError
from fusionbench.files import atomic_write_bytes, atomic_write_text, write_text_if_changed
from fusionbench.layout import SeedFiles
from fusionbench.stats import percentile_interval
from pipelines.benchmark import Benchmark
from pipelines.config import run_layout
from pipelines.detection_inputs import INPUT_KEYS, detection_inputs
from pipelines.fuse import check_method_name, fused_set_problems
from pipelines.safe_delete import remove_inside
from pipelines.schema import Config

log = logging.getLogger(__name__)


class DetectError(FusionBenchError):
    """The detect stage cannot run (missing fused set, bad setting)."""


STATISTICS_LEVEL = 0.95


def detect_method(config: Config, method: str, force: bool = False) -> dict[str, Any]:
    """Every seed of one method (finished seeds are skipped), then its across-seed summary."""
    check_method_name(method)  # before anything is deleted: the name is a folder inside the stage's own
    stage = run_layout(config).detect
    out = stage.method(method).folder
    check_fused_set(Benchmark(run_layout(config).benchmark), method)  # nothing is deleted for a set that cannot be used
    if force:
        remove_inside(out, stage.folder, "--force: redo this method (every seed)")
    check_layout(out)
    seeds = list(config.detect.seeds)
    runs = [detect_seed(config, method, seed) for seed in seeds]
    return write_method_summary(config, method, seeds, runs)


def check_layout(out: Path) -> None:
    """A method folder from before per-seed folders (files directly in it) is refused, with how to move it."""
    old = SeedFiles(out)  # the files of one seed, directly in the method folder
    legacy = [path.name for path in old.outputs if path.exists() and path != old.matches]
    if not legacy:
        return
    protocol = old.protocol
    seed = json.loads(protocol.read_text()).get("seed", 0) if protocol.is_file() else 0
    raise DetectError(f"{out}: detection results in the old layout (one seed, files directly in the method folder); "
                      f"they belong to seed {seed}. Move them into their seed folder and rerun (the matches and "
                      f"intervals are computed from {old.predictions.name}, nothing is trained again): "
                      f"cd {out} && mkdir seed{seed} && mv {' '.join(legacy)} seed{seed}/ "
                      f"-- or rerun with --force to train every seed again")


def detect_seed(config: Config, method: str, seed: int) -> dict[str, Any]:
    """Train, select, predict and evaluate one (method, seed); returns its results (skips a finished one)."""
    check_method_name(method)
    layout = run_layout(config)
    method_root = layout.detect.method(method).folder
    files = layout.detect.method(method).seed(seed)
    out = files.folder
    benchmark = Benchmark(layout.benchmark)
    check_fused_set(benchmark, method)
    protocol = {**detect_protocol(config, seed), **detection_inputs(benchmark, method)}  # ground truth checked here
    protocol_path, results_path = files.protocol, files.results
    if protocol_path.is_file():
        before = json.loads(protocol_path.read_text())
        changed = {k: [before.get(k), v] for k, v in protocol.items() if before.get(k) != v}
        if changed and set(changed) <= set(INPUT_KEYS):  # images, labels or ground truth redone: so is detection
            remove_inside(out, method_root, f"its inputs changed since detection ran ({', '.join(sorted(changed))}); "
                                            "training again")
        elif changed:
            raise DetectError(f"{out}: started with other settings ({changed}: before, now); "
                              f"rerun with --force to start {method} again")
    if results_path.is_file():
        results = json.loads(results_path.read_text())
        if files.matches.is_file() and results.get("bootstrap") == bootstrap_settings(config):
            log.info("%s seed %d: detection already done (%s); use --force to redo", method, seed, results_path)
            return results
        return _evaluate(config, benchmark, files, results)  # moved from the old layout, or other bootstrap settings

    settings = train_settings(config, seed)
    use_offline_ultralytics(layout.detect.ultralytics_settings)
    if settings.needs_amp_check:
        check_weights = config.detect.amp_check_weights
        if not check_weights:
            raise DetectError(f"detect.amp={settings.amp} needs detect.amp_check_weights=/path/to/yolo26n.pt: "
                              "ultralytics' CUDA AMP self-test would otherwise download it "
                              "(detect.amp=bf16 runs without the self-test)")
        install_amp_check_weights(check_weights)
    source = yolo.model_source(config.detect.weights, config.detect.allow_scratch)
    atomic_write_text(protocol_path, json.dumps(protocol, indent=1))

    data_yaml = yolo.write_data_yaml(files.data_yaml, benchmark.fused_dir(method), benchmark.classes)
    with yolo.cpu_threads(config.detect.cpu_threads):
        train_dir = yolo.train(data_yaml, files.train, source, settings)
        chosen = yolo.select(train_dir, protocol["select_by"])
        log.info("%s seed %d: evaluating epoch %d (selected by %s) on the test split", method, seed, chosen.epoch,
                 chosen.select_by)

        conf, iou = protocol["conf"], protocol["iou"]
        gt = coco_eval.load_ground_truth(benchmark.coco_path("test"))
        images = [benchmark.fused_image(method, "test", stem) for stem in benchmark.stems("test")]
        detections = coco_eval.to_coco_detections(
            yolo.predict(chosen.weights, images, settings.imgsz, conf, iou, settings.device), gt)
        atomic_write_text(files.predictions, json.dumps(detections))
        ultralytics_map50 = yolo.ultralytics_map50(chosen.weights, data_yaml, "test", settings, conf, iou,
                                                   files.ultralytics_test)

    results = {
        "method": method,
        "seed": seed,
        "ultralytics_map50": ultralytics_map50,
        "selected_epoch": chosen.epoch,
        "val_map50_per_epoch": [row["map50"] for row in yolo.val_curve(train_dir)],
        "weights": str(chosen.weights),
        **protocol,
        "test_images": len(images),
        "train_dir": str(train_dir),
    }
    return _evaluate(config, benchmark, files, results)


def _evaluate(config: Config, benchmark: Benchmark, files: SeedFiles, results: dict[str, Any]) -> dict[str, Any]:
    """pycocotools' scores, the per-image matches and the image-bootstrap intervals of one (method, seed),
    from its test predictions; writes matches.npz, results.csv and results.json (last)."""
    gt = coco_eval.load_ground_truth(benchmark.coco_path("test"))
    detections = json.loads(files.predictions.read_text())
    scores = coco_eval.evaluate(gt, detections)
    matched = matches.match(gt, detections)
    atomic_write_bytes(files.matches, matches.to_bytes(matched))
    bootstrap = bootstrap_settings(config)
    draws = map_statistics.Draws.make(len(matched.images), 1, bootstrap["replicates"], bootstrap["seed"])
    low, high = percentile_interval(map_statistics.replicate_values([matched], draws)[:, 0], STATISTICS_LEVEL)
    names = map_statistics.statistic_names(matched.classes)
    interval = {name: _pair(low[k], high[k]) for k, name in enumerate(names)}
    results = {
        **results,
        "map50": scores.map50, "map50_ci95": interval[map_statistics.MAP50],
        "map50_95": scores.map50_95, "map50_95_ci95": interval[map_statistics.MAP50_95],
        "per_class": scores.per_class,
        "per_class_ci95": {name: (interval[f"ap50/{name}"] if scores.per_class.get(name) is not None else None)
                           for name in matched.classes},
        "bootstrap": bootstrap,
    }
    atomic_write_text(files.results_table, _csv([results], benchmark.classes))
    atomic_write_text(files.results, json.dumps(results, indent=1))
    log.info("%s seed %s: test mAP@50 %s %s (ultralytics %s)", results["method"], results.get("seed"),
             _fmt(scores.map50), interval[map_statistics.MAP50], results.get("ultralytics_map50"))
    return results


def bootstrap_settings(config: Config) -> dict[str, int]:
    """The image bootstrap behind every interval: replicates and RNG seed (``stats.bootstrap``, ``stats.seed``)."""
    return {"replicates": config.stats.bootstrap, "seed": config.stats.seed}


def write_method_summary(config: Config, method: str, seeds: list[int],
                         runs: list[dict[str, Any]]) -> dict[str, Any]:
    """``<run>/detect/<method>/summary.json``: per statistic the mean over seeds, sd, n and the interval of
    the two-level bootstrap (seeds, then images; the image bootstrap alone with one seed)."""
    detection = run_layout(config).detect.method(method)
    seed_runs = [matches.load(detection.seed(seed).matches) for seed in seeds]
    bootstrap = bootstrap_settings(config)
    summary = {"method": method, "seeds": seeds, "bootstrap": bootstrap, "model_source": runs[0].get("model_source"),
               "intervals": "seeds and images" if len(seeds) > 1 else "images only (one seed: seed variance not measured)",
               "statistics": method_statistics(seed_runs, bootstrap),
               "test_images": len(seed_runs[0].images),
               "runs": {str(seed): {k: run.get(k) for k in ("selected_epoch", "ultralytics_map50", "val_map50_per_epoch",
                                                             "weights", "map50", "map50_ci95")}
                        for seed, run in zip(seeds, runs)}}
    write_text_if_changed(detection.summary, json.dumps(summary, indent=1))  # a rerun that skipped every seed keeps it
    return summary


def method_statistics(seed_runs: list[matches.Matches], bootstrap: dict[str, int]) -> dict[str, dict[str, Any]]:
    """Per statistic (mAP@50, mAP@50:95, AP@50 per class): per-seed values, mean, sd (n - 1; None with
    one seed), n seeds and the 95% interval of the two-level bootstrap. None where a class has no ground truth."""
    names = map_statistics.statistic_names(seed_runs[0].classes)
    points = map_statistics.point_values(seed_runs)
    draws = map_statistics.Draws.make(len(seed_runs[0].images), len(seed_runs), bootstrap["replicates"],
                                      bootstrap["seed"])
    averaged = map_statistics.over_drawn_seeds(map_statistics.replicate_values(seed_runs, draws), draws)
    low, high = percentile_interval(averaged, STATISTICS_LEVEL)
    out = {}
    for k, name in enumerate(names):
        column = points[:, k]
        if np.isnan(column).any():
            out[name] = None
            continue
        out[name] = {"mean": float(column.mean()), "sd": float(column.std(ddof=1)) if len(column) > 1 else None,
                     "n": int(len(column)), "ci95": _pair(low[k], high[k]), "per_seed": column.tolist()}
    return out


def _pair(low: float, high: float) -> list[float] | None:
    return None if np.isnan(low) or np.isnan(high) else [float(low), float(high)]


def check_fused_set(benchmark: Benchmark, method: str) -> None:
    """Detection starts only on a complete fused set (every image of every split, with the content its
    fuse manifest records)."""
    problems = fused_set_problems(benchmark, method)
    if problems:
        shown = "; ".join(problems[:5]) + (f"; ... and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise DetectError(f"{benchmark.fused_dir(method)}: fused set {method!r} is missing or incomplete "
                          f"(run `pipelines fuse --method {method}`): {shown}")


def detect_protocol(config: Config, seed: int) -> dict[str, Any]:
    """What must not change between the start and the end of a (method, seed) run (nor between methods)."""
    settings = train_settings(config, seed)
    select_by = config.detect.select_by
    if select_by not in yolo.SELECT_BY:
        raise DetectError(f"detect.select_by={select_by!r}: expected one of {yolo.SELECT_BY}")
    if settings.device and "," in settings.device:  # untested here, and its launcher pip-installs cloudpickle
        raise DetectError(f"run.device={settings.device}: one device per detect run; train methods in parallel "
                          "on separate GPUs instead (run.device=0, run.device=1, ...)")
    weights = config.detect.weights
    return {
        "model_source": f"pretrained {Path(weights).expanduser().resolve()}" if weights else "scratch",
        "epochs": settings.epochs, "imgsz": settings.imgsz, "batch": settings.batch, "seed": settings.seed,
        "amp": settings.amp, "select_by": select_by, "train_args": dict(settings.extra),
        "conf": config.detect.conf, "iou": config.detect.iou,
    }


def train_settings(config: Config, seed: int) -> yolo.TrainSettings:
    """The detector settings shared by every method of a run, with one of its seeds."""
    device = config.run.device
    return yolo.TrainSettings(
        epochs=config.detect.epochs,
        imgsz=config.detect.imgsz,
        batch=config.detect.batch,
        workers=config.detect.workers,
        seed=seed,
        device=None if device in (None, "auto") else str(device),
        amp=config.detect.amp,
        resume=config.detect.resume,
        extra=config.detect.train_args,
    )


def write_summary(config: Config, classes: list[str]) -> Path:
    """``summary.csv``: one row per method whose across-seed summary exists, sorted by method name: mean
    over seeds, sd, n seeds and the 95% interval of mAP@50 and mAP@50:95, then the mean AP@50 per class."""
    stage = run_layout(config).detect
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    columns = [f"{name}{part}" for name in (map_statistics.MAP50, map_statistics.MAP50_95)
               for part in ("", "_sd", "_ci_low", "_ci_high")]
    writer.writerow(["method", "seeds", *columns, *classes])
    for path in stage.method_summaries():
        summary = json.loads(path.read_text())
        statistics = summary["statistics"]
        cells = []
        for name in (map_statistics.MAP50, map_statistics.MAP50_95):
            entry = statistics.get(name) or {}
            cells += [_fmt(entry.get("mean")), _fmt(entry.get("sd")), *_fmt_interval(entry.get("ci95"))]
        per_class = [_fmt((statistics.get(f"ap50/{name}") or {}).get("mean")) for name in classes]
        writer.writerow([summary["method"], " ".join(map(str, summary["seeds"])), *cells, *per_class])
    write_text_if_changed(stage.summary, buffer.getvalue())
    return stage.summary


def _csv(rows: list[dict[str, Any]], classes: list[str]) -> str:
    """One (method, seed) per row: mAP@50 and mAP@50:95 with their image-bootstrap intervals, AP@50 per class."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["method", "seed", "map50", "map50_ci_low", "map50_ci_high", "map50_95", "map50_95_ci_low",
                     "map50_95_ci_high", *classes])
    for row in rows:
        per_class = row.get("per_class", {})
        writer.writerow([row["method"], row.get("seed", ""), _fmt(row["map50"]), *_fmt_interval(row.get("map50_ci95")),
                         _fmt(row["map50_95"]), *_fmt_interval(row.get("map50_95_ci95")),
                         *(_fmt(per_class.get(name)) for name in classes)])
    return buffer.getvalue()


def _fmt_interval(interval: list[float] | None) -> list[str]:
    return ["", ""] if interval is None else [_fmt(interval[0]), _fmt(interval[1])]


def _fmt(value: float | None) -> str:
    """Empty where there is no value (a class absent from the test split), never a fake zero."""
    return "" if value is None else f"{value:.6f}"
