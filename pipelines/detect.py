"""The detect stage: YOLOv5s on one method's fused set, test mAP with pycocotools, results for the report.

Every method is trained with the same seed, hyper-parameters, split and image size (all from the config's
``detect`` section), so the only difference between two rows of the table is the fused images.

Outputs under ``stage_dir(config, "detect", method)``::

    protocol.json           the settings the run started with; a rerun with other settings stops (use --force)
    data.yaml               ultralytics dataset file (absolute paths into <bench>/fused/<method>)
    train/                  ultralytics training folder: results.csv (per epoch), weights/{last,best,best_map50}.pt
    ultralytics_test/       ultralytics' own validation of the selected weights on the test split
    test_predictions.json   COCO detections on the test split (image ids and category ids of coco/test.json)
    results.json            mAP@50, mAP@50:95, AP@50 per class, selection, settings (written last: marks done)
    results.csv             the same as one table row

and ``stage_dir(config, "detect")/summary.csv`` with one row per finished method.

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
import shutil
from pathlib import Path
from typing import Any

from detection import coco_eval, yolo
from detection.offline import install_amp_check_weights, use_offline_ultralytics
from fusionbench.errors import FusionBenchError
from fusionbench.files import atomic_write_text
from pipelines.benchmark import Benchmark
from pipelines.config import benchmark_dir, stage_dir
from pipelines.fuse import fused_set_identity, is_complete
from pipelines.schema import Config

log = logging.getLogger(__name__)


class DetectError(FusionBenchError):
    """The detect stage cannot run (missing fused set, bad setting)."""


def detect_method(config: Config, method: str, force: bool = False) -> dict[str, Any]:
    """Train, select, predict and evaluate one method; returns its results (skips a finished method)."""
    out = stage_dir(config, "detect", method)
    if force and out.exists():
        shutil.rmtree(out)
    benchmark = Benchmark(benchmark_dir(config))
    check_fused_set(benchmark, method)
    protocol = {**detect_protocol(config), "fused_set": fused_set_identity(benchmark, method)}
    protocol_path, results_path = out / "protocol.json", out / "results.json"
    if protocol_path.is_file():
        before = json.loads(protocol_path.read_text())
        changed = {k: [before.get(k), v] for k, v in protocol.items() if before.get(k) != v}
        if set(changed) == {"fused_set"}:  # the images were redone (new options, new split): so is detection
            log.warning("%s: the fused set changed since detection ran; training again", method)
            shutil.rmtree(out)
        elif changed:
            raise DetectError(f"{out}: started with other settings ({changed}: before, now); "
                              f"rerun with --force to start {method} again")
    if results_path.is_file():
        log.info("%s: detection already done (%s); use --force to redo", method, results_path)
        return json.loads(results_path.read_text())

    settings = train_settings(config)
    use_offline_ultralytics(stage_dir(config, "detect") / ".ultralytics")
    if settings.needs_amp_check:
        check_weights = config.detect.amp_check_weights
        if not check_weights:
            raise DetectError(f"detect.amp={settings.amp} needs detect.amp_check_weights=/path/to/yolo26n.pt: "
                              "ultralytics' CUDA AMP self-test would otherwise download it "
                              "(detect.amp=bf16 runs without the self-test)")
        install_amp_check_weights(check_weights)
    source = yolo.model_source(config.detect.weights, config.detect.allow_scratch)
    atomic_write_text(protocol_path, json.dumps(protocol, indent=1))

    data_yaml = yolo.write_data_yaml(out / "data.yaml", benchmark.fused_dir(method), benchmark.classes)
    with yolo.cpu_threads(config.detect.cpu_threads):
        train_dir = yolo.train(data_yaml, out / "train", source, settings)
        chosen = yolo.select(train_dir, protocol["select_by"])
        log.info("%s: evaluating epoch %d (selected by %s) on the test split", method, chosen.epoch, chosen.select_by)

        conf, iou = protocol["conf"], protocol["iou"]
        gt = coco_eval.load_ground_truth(benchmark.coco_path("test"))
        images = [benchmark.fused_image(method, "test", stem) for stem in benchmark.stems("test")]
        detections = coco_eval.to_coco_detections(
            yolo.predict(chosen.weights, images, settings.imgsz, conf, iou, settings.device), gt)
        atomic_write_text(out / "test_predictions.json", json.dumps(detections))
        scores = coco_eval.evaluate(gt, detections)
        ultralytics_map50 = yolo.ultralytics_map50(chosen.weights, data_yaml, "test", settings, conf, iou,
                                                   out / "ultralytics_test")

    results = {
        "method": method,
        "map50": scores.map50,
        "map50_95": scores.map50_95,
        "per_class": scores.per_class,
        "ultralytics_map50": ultralytics_map50,
        "selected_epoch": chosen.epoch,
        "val_map50_per_epoch": [row["map50"] for row in yolo.val_curve(train_dir)],
        "weights": str(chosen.weights),
        **protocol,
        "test_images": len(images),
        "train_dir": str(train_dir),
    }
    atomic_write_text(out / "results.csv", _csv([results], benchmark.classes))
    atomic_write_text(results_path, json.dumps(results, indent=1))
    log.info("%s: test mAP@50 %s (ultralytics %.4f)", method, _fmt(scores.map50), ultralytics_map50)
    return results


def check_fused_set(benchmark: Benchmark, method: str) -> None:
    """Detection starts only on a complete fused set (every image of every split, per its fuse manifest)."""
    if not is_complete(benchmark, method):
        raise DetectError(f"{benchmark.fused_dir(method)}: fused set {method!r} is missing or incomplete "
                          f"(run `pipelines fuse --method {method}`)")


def detect_protocol(config: Config) -> dict[str, Any]:
    """What must not change between the start and the end of a method's run (nor between methods)."""
    settings = train_settings(config)
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


def train_settings(config: Config) -> yolo.TrainSettings:
    """The detector settings shared by every method of a run."""
    device = config.run.device
    return yolo.TrainSettings(
        epochs=config.detect.epochs,
        imgsz=config.detect.imgsz,
        batch=config.detect.batch,
        workers=config.detect.workers,
        seed=config.detect.seed,
        device=None if device in (None, "auto") else str(device),
        amp=config.detect.amp,
        resume=config.detect.resume,
        extra=config.detect.train_args,
    )


def write_summary(config: Config, classes: list[str]) -> Path:
    """``summary.csv``: one row per method whose results.json exists, sorted by method name."""
    root = stage_dir(config, "detect")
    rows = [json.loads(p.read_text()) for p in sorted(root.glob("*/results.json"))]
    path = root / "summary.csv"
    atomic_write_text(path, _csv(rows, classes))
    return path


def _csv(rows: list[dict[str, Any]], classes: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["method", "map50", "map50_95", *classes])
    for row in rows:
        per_class = row.get("per_class", {})
        writer.writerow([row["method"], _fmt(row["map50"]), _fmt(row["map50_95"]),
                         *(_fmt(per_class.get(name)) for name in classes)])
    return buffer.getvalue()


def _fmt(value: float | None) -> str:
    """Empty where there is no value (a class absent from the test split), never a fake zero."""
    return "" if value is None else f"{value:.6f}"
