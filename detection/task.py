"""Object detection as a downstream task: a YOLO detector per fused set and seed, COCO mAP from pycocotools.

Every method is trained with the same seed, hyper-parameters, split and image size (the ``detect``
section), so the only difference between two rows of a table is the fused images. Files of one
(model, method, seed) run, beside the stage's ``protocol.json`` / ``results.json`` / ``results.csv``
(names: :class:`DetectionFiles`)::

    data.yaml               ultralytics dataset file (absolute paths into <bench>/fused/<method>)
    train/                  ultralytics training folder: results.csv (per epoch), weights/{last,best,best_map50}.pt
    ultralytics_test/       ultralytics' own validation of the selected weights on the test split
    test_predictions.json   COCO detections on the test split (image ids and category ids of coco/test.json)
    matches.npz             per test image and class: scores, true positive flags per IoU, ground-truth counts

Test evaluation: predictions at ``conf`` (0.001, so the precision-recall curve is complete) and NMS IoU
``iou`` (0.6, YOLOv5's val.py setting); pycocotools keeps the 100 best per image. Ultralytics' own test
mAP@50 of the same weights is recorded as well (detection/README.md: why the two differ slightly).
Detectors are model rows (:data:`MODELS`); another one is one :func:`fusionbench.tasks.register_model` call.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from detection import coco_eval, map_statistics, matches, yolo
from fusionbench.benchmark import SPLITS, Benchmark
from fusionbench.errors import FusionBenchError
from fusionbench.files import atomic_write_bytes, atomic_write_text, sha256_file
from fusionbench.fused_set import fused_set_identity
from fusionbench.identity import weights_source
from fusionbench.layout import UnitFiles
from fusionbench.settings import Section, check_seeds, check_weights, weights_for
from fusionbench.stats import Draws, percentile_interval
from fusionbench.tasks import Model, Statistic, Task, Unit, register_task
from fusionbench.ultralytics_offline import cpu_threads, install_amp_check_weights, use_offline_ultralytics

log = logging.getLogger(__name__)

LEVEL = 0.95
INPUT_KEYS = ("fused_set", "labels", "ground_truth")  # protocol entries that describe data, not settings
# Arguments that the detection protocol passes to ultralytics' train() itself, and where each is set instead:
# in detect.train_args they would clash with it (a TypeError) or silently change the protocol between methods.
PROTOCOL_ARGS = {
    "data": "data.benchmark and --method (the fused set)", "epochs": "detect.epochs", "imgsz": "detect.imgsz",
    "batch": "detect.batch", "workers": "detect.workers", "seed": "detect.seeds", "device": "run.device",
    "amp": "detect.amp", "resume": "detect.resume", "project": "run.root", "name": "run.name",
    "exist_ok": "nothing (the protocol resumes in its own folder)", "deterministic": "nothing (always true)",
    "plots": "nothing (always false)", "verbose": "nothing (always false)",
}


class DetectError(FusionBenchError):
    """The detection task cannot run (missing input, bad setting)."""


# --- settings and models ----------------------------------------------------------------------

class DetectionSettings(Section):
    """The ``detect`` section: identical for every method of a run (recorded in each run's protocol.json)."""

    weights: Optional[Path | dict[str, Path]] = Field(
        None, description="pre-trained detector weights: a path (one detector listed in tasks.detection) or "
                          "{model: path}, e.g. {yolov5s: yolov5su.pt, yolov8s: yolov8s.pt}; a model without "
                          "weights trains from scratch, only with allow_scratch")
    allow_scratch: bool = Field(False, description="accept a randomly initialised detector (logged)")
    epochs: int = Field(40, ge=1, description="detector training epochs per method")
    imgsz: int = Field(640, ge=32, multiple_of=32, description="training and test image size")
    batch: int = Field(16, ge=1, description="detector batch size")
    workers: int = Field(8, ge=0, description="ultralytics data-loading workers")
    seeds: list[int] = Field([0, 1, 2], min_length=1, description="detector training seeds: every method is trained "
                             "once per seed (the published protocol: 3; [0] is the single-run protocol, a third of the cost)")
    select_by: Literal["map50", "fitness"] = Field("map50", description="best epoch by val mAP@50 (the paper) or "
                                                                        "ultralytics' fitness (its best.pt)")
    conf: float = Field(0.001, ge=0, le=1, description="confidence threshold of the test predictions")
    iou: float = Field(0.6, gt=0, le=1, description="NMS IoU of the test predictions")
    amp: bool | Literal["fp16", "bf16"] = Field(False, description="training precision as ultralytics takes it: "
                                                                 "false, true or fp16 (needs amp_check_weights on "
                                                                 "CUDA, else ultralytics downloads a model), bf16")
    amp_check_weights: Optional[Path] = Field(None, description="local model for ultralytics' AMP check")
    resume: bool = Field(True, description="continue an interrupted training from ultralytics' last checkpoint "
                                           "(not bit-identical)")
    cpu_threads: Optional[int] = Field(None, ge=1, description="CPU training threads; null: the process's (all cores, or "
                                                               "a local worker's share)")
    train_args: dict[str, Any] = Field(default_factory=dict, description="further ultralytics train arguments, the "
                                                                         "same for every method")
    draw_score: float = Field(0.25, ge=0, le=1, description="detections drawn in the report's qualitative grid")

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: list[int]) -> list[int]:
        return check_seeds(value)

    @field_validator("train_args")
    @classmethod
    def _not_the_protocol(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key, item in value.items():
            if key in PROTOCOL_ARGS:
                raise ValueError(f"{key!r} is set by the detection protocol itself; use {PROTOCOL_ARGS[key]}")
            if isinstance(item, float) and not math.isfinite(item):
                raise ValueError(f"{key} = {item}: not a finite number")
        return value


def detector(name: str, config: str, weights: str, summary: str) -> Model:
    """A detector row: ultralytics' model config for a scratch start and the release file users pass as weights."""
    return Model(name, summary, {"config": config, "weights": weights})


MODELS = {model.name: model for model in (
    detector("yolov5s", "yolov5s.yaml", "yolov5su.pt", "YOLOv5s (ultralytics' YOLOv5su head)"),
    detector("yolov5n", "yolov5n.yaml", "yolov5nu.pt", "YOLOv5n (ultralytics' YOLOv5nu head)"),
    detector("yolov8s", "yolov8s.yaml", "yolov8s.pt", "YOLOv8s"),
    detector("yolo11s", "yolo11s.yaml", "yolo11s.pt", "YOLO11s"),
)}


@dataclass(frozen=True)
class DetectionFiles(UnitFiles):
    """One (model, method, seed) detector run: the stage's files and the detector's evidence."""

    @property
    def data_yaml(self) -> Path:
        return self.folder / "data.yaml"

    @property
    def train(self) -> Path:
        """Ultralytics' training folder (its own results.csv and weights/)."""
        return self.folder / "train"

    @property
    def ultralytics_test(self) -> Path:
        return self.folder / "ultralytics_test"

    @property
    def predictions(self) -> Path:
        """COCO detections on the test split."""
        return self.folder / "test_predictions.json"

    @property
    def matches(self) -> Path:
        """Per test image and class: scores, true-positive flags, ground-truth counts."""
        return self.folder / "matches.npz"

    @property
    def evidence(self) -> tuple[Path, ...]:
        return (self.matches,)

    @property
    def derived(self) -> tuple[Path, ...]:
        """The test predictions (from the selected weights), then the matches computed from them."""
        return (self.predictions, self.matches)


def model_weights(settings: DetectionSettings, model: Model) -> Path | None:
    """The weights given for ``model`` (a plain path is every listed detector's: checked by :func:`check`)."""
    return weights_for(settings.weights, model.name)


def check(settings: DetectionSettings, models: Sequence[str]) -> None:
    """A plain weights path cannot serve two detectors; a mapping names only listed ones."""
    check_weights(settings.weights, models, "detector")


# --- one unit: train, predict, evaluate -------------------------------------------------------

def train_settings(settings: DetectionSettings, seed: int, device: str | None = None) -> yolo.TrainSettings:
    """The detector settings shared by every method of a run, with one of its seeds."""
    return yolo.TrainSettings(epochs=settings.epochs, imgsz=settings.imgsz, batch=settings.batch,
                              workers=settings.workers, seed=seed, device=device, amp=settings.amp,
                              resume=settings.resume, extra=settings.train_args)


def protocol_settings(settings: DetectionSettings, model: Model, seed: int, device: str | None = None) -> dict[str, Any]:
    """The settings part of a run's protocol: what must not change between its start and its end, nor
    between the methods of a comparison."""
    train = train_settings(settings, seed, device)
    if train.device and "," in train.device:  # untested here, and its launcher pip-installs cloudpickle
        raise DetectError(f"device {train.device}: one device per detector run; train methods in parallel "
                          "on separate GPUs instead (0, 1, ...)")
    weights = model_weights(settings, model)
    return {
        "model": model.name,
        "model_source": weights_source(weights, "scratch"),
        "epochs": train.epochs, "imgsz": train.imgsz, "batch": train.batch, "seed": train.seed,
        "amp": train.amp, "select_by": settings.select_by, "train_args": dict(train.extra),
        "conf": settings.conf, "iou": settings.iou,
    }


def protocol(unit: Unit) -> dict[str, Any]:
    """The run's settings and the content identities of its data (:data:`INPUT_KEYS`: fused images, YOLO
    labels, COCO test ground truth)."""
    return {**protocol_settings(unit.settings, unit.model, unit.seed, unit.device),
            **inputs(unit.benchmark, unit.method)}


def labels_identity(benchmark: Benchmark) -> str:
    """sha256 over every split's YOLO label files (split, stem, content hash), in split-list order."""
    missing, content = [], []
    for split in SPLITS:
        for stem in benchmark.stems(split):
            path = benchmark.labels_dir(split) / f"{stem}.txt"
            if not path.is_file():
                missing.append(str(path))
                continue
            content.append((split, stem, sha256_file(path)))
    if missing:
        shown = ", ".join(missing[:5]) + (f" ... and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise DetectError(f"{benchmark.root}: {len(missing)} label file(s) missing: {shown} (re-run `pipelines prepare`)")
    return _digest(content)


def _digest(content: Any) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(content).encode()).hexdigest()


def inputs(benchmark: Benchmark, method: str) -> dict[str, str]:
    """The data identities a run depends on: a change of any retrains the detector."""
    ground_truth = benchmark.coco_path("test")
    if not ground_truth.is_file():
        raise DetectError(f"{ground_truth}: COCO ground truth missing (re-run `pipelines prepare`)")
    return {"fused_set": fused_set_identity(benchmark, method), "labels": labels_identity(benchmark),
            "ground_truth": sha256_file(ground_truth)}


def run(unit: Unit) -> dict[str, Any]:
    """Train, select, predict and evaluate one (model, method, seed); a run that predicted before is only
    evaluated again (other bootstrap settings, or evidence to repair)."""
    files = DetectionFiles(unit.folder)
    previous = json.loads(files.results.read_text()) if files.results.is_file() else None
    if previous is not None and files.predictions.is_file():
        return evaluate(unit, previous)
    settings: DetectionSettings = unit.settings
    train = train_settings(settings, unit.seed, unit.device)
    use_offline_ultralytics(unit.workspace / "ultralytics")
    if train.needs_amp_check:
        if not settings.amp_check_weights:
            raise DetectError(f"amp={train.amp} needs amp_check_weights=/path/to/yolo26n.pt: ultralytics' CUDA AMP "
                              "self-test would otherwise download it (amp=bf16 runs without the self-test)")
        install_amp_check_weights(settings.amp_check_weights)
    weights = model_weights(settings, unit.model)
    source = yolo.model_source(weights, settings.allow_scratch, unit.model.options["config"],
                               unit.model.options["weights"])
    benchmark = unit.benchmark
    data_yaml = yolo.write_data_yaml(files.data_yaml, unit.fused_dir, benchmark.classes)
    with cpu_threads(settings.cpu_threads):
        train_dir = yolo.train(data_yaml, files.train, source, train)
        chosen = yolo.select(train_dir, settings.select_by)
        weights_sha256 = sha256_file(chosen.weights)
        if previous is not None and previous.get("weights_sha256", weights_sha256) != weights_sha256:
            raise DetectError(f"{chosen.weights}: not the checkpoint this run evaluated before (its content differs "
                              f"from what {files.results.name} recorded); rerun with --force to train again")
        log.info("%s %s seed %d: evaluating epoch %d (selected by %s) on the test split", unit.model.name,
                 unit.method, unit.seed, chosen.epoch, chosen.select_by)
        gt = coco_eval.load_ground_truth(benchmark.coco_path("test"))
        images = [benchmark.fused_image(unit.method, "test", stem) for stem in benchmark.stems("test")]
        detections = coco_eval.to_coco_detections(
            yolo.predict(chosen.weights, images, train.imgsz, settings.conf, settings.iou, train.device), gt)
        atomic_write_text(files.predictions, json.dumps(detections))
        ultralytics_map50 = yolo.ultralytics_map50(chosen.weights, data_yaml, "test", train, settings.conf,
                                                   settings.iou, files.ultralytics_test)
    results = {
        "method": unit.method,
        "seed": unit.seed,
        "ultralytics_map50": ultralytics_map50,
        "selected_epoch": chosen.epoch,
        "val_map50_per_epoch": [row["map50"] for row in yolo.val_curve(train_dir)],
        "weights": str(chosen.weights),
        "weights_sha256": weights_sha256,
        **protocol(unit),
        "test_images": len(images),
        "train_dir": str(train_dir),
    }
    return evaluate(unit, results)


def evaluate(unit: Unit, results: dict[str, Any]) -> dict[str, Any]:
    """pycocotools' scores, the per-image matches and the image-bootstrap intervals of one run, from its test
    predictions; writes matches.npz, results.csv and results.json (last)."""
    files = DetectionFiles(unit.folder)
    benchmark = unit.benchmark
    gt = coco_eval.load_ground_truth(benchmark.coco_path("test"))
    try:
        detections = json.loads(files.predictions.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DetectError(f"{files.predictions}: not valid JSON ({error}); rerun with --force to train again") from None
    scores = coco_eval.evaluate(gt, detections)
    matched = matches.match(gt, detections)
    atomic_write_bytes(files.matches, matches.to_bytes(matched))
    bootstrap = {"replicates": unit.bootstrap.replicates, "seed": unit.bootstrap.seed}
    draws = Draws.make(len(matched.images), 1, bootstrap["replicates"], bootstrap["seed"])
    low, high = percentile_interval(map_statistics.replicate_values([matched], draws)[:, 0], LEVEL)
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
    atomic_write_text(files.results_table, _csv(results, benchmark.classes))
    atomic_write_text(files.results, json.dumps(results, indent=1))
    log.info("%s %s seed %s: test mAP@50 %s %s (ultralytics %s)", unit.model.name, results["method"],
             results.get("seed"), _fmt(scores.map50), interval[map_statistics.MAP50], results.get("ultralytics_map50"))
    return results


def _pair(low: float, high: float) -> list[float] | None:
    return None if np.isnan(low) or np.isnan(high) else [float(low), float(high)]


def _csv(row: dict[str, Any], classes: list[str]) -> str:
    """One (method, seed) row: mAP@50 and mAP@50:95 with their image-bootstrap intervals, AP@50 per class."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["method", "seed", "map50", "map50_ci_low", "map50_ci_high", "map50_95", "map50_95_ci_low",
                     "map50_95_ci_high", *classes])
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


# --- statistics from the per-image matches ----------------------------------------------------

class DetectionStatistics:
    """mAP@50 (primary), mAP@50:95 and AP@50 per class from per-image matches (:mod:`detection.map_statistics`)."""

    primary = Statistic(map_statistics.MAP50, "mAP@50")

    def load(self, folder: Path) -> matches.Matches:
        return matches.load(DetectionFiles(folder).matches)

    def statistics(self, evidence: matches.Matches) -> list[Statistic]:
        return [self.primary, Statistic(map_statistics.MAP50_95, "mAP@50:95"),
                *(Statistic(f"ap50/{name}", f"AP@50 {name}", per_class=name) for name in evidence.classes)]

    def images(self, evidence: matches.Matches) -> tuple[str, ...]:
        return tuple(evidence.images)

    def point_values(self, seeds: Sequence[matches.Matches]) -> np.ndarray:
        return map_statistics.point_values(list(seeds))

    def replicate_values(self, seeds: Sequence[matches.Matches], draws: Draws) -> np.ndarray:
        return map_statistics.replicate_values(list(seeds), draws)

    def permuted_deltas(self, a: Sequence[matches.Matches], b: Sequence[matches.Matches], permutations: int,
                        rng: np.random.Generator) -> np.ndarray:
        return map_statistics.permuted_deltas(list(a), list(b), permutations, rng)


# --- the report's figures ---------------------------------------------------------------------

def figures(view: Any) -> list[dict[str, Any]]:
    """Detections on a few test images (ground truth in green on the sources, the method's detections with
    score >= draw_score in red on its fused image) and the detectors' validation curves (first seed)."""
    from detection.drawing import draw_boxes, ground_truth_boxes

    settings: DetectionSettings = view.settings
    truth, names = ground_truth_boxes(view.benchmark.coco_path("test"))
    position = {stem: k + 1 for k, stem in enumerate(view.benchmark.stems("test"))}
    predicted: dict[str, dict[int, list]] = {}
    for method, folder in view.first_seed_folders.items():
        path = DetectionFiles(folder).predictions
        if path.is_file():
            per_image: dict[int, list] = {}
            for det in json.loads(path.read_text()):
                if det["score"] >= settings.draw_score:
                    per_image.setdefault(det["image_id"], []).append((det["bbox"], det["category_id"], det["score"]))
            predicted[method] = per_image
    grids = []
    for stem in view.stems:
        gt = [(box, cat, None) for box, cat in truth.get(stem, [])]
        tiles = [(f"{title} + ground truth", draw_boxes(image, gt, names, truth=True))
                 for title, image in view.sources(stem)]
        for method in view.methods:
            image = view.fused(method, stem)
            shown = predicted.get(method, {}).get(position[stem], [])
            title = method if method in predicted else f"{method} (no detections yet)"
            tiles.append((title, None if image is None else draw_boxes(image, shown, names, truth=False)))
        grids.append({"kind": "grid", "title": f"test image {stem}", "tiles": tiles})
    curves = {m: pd.DataFrame({"epoch": np.arange(1, len(r["val_map50_per_epoch"]) + 1),
                               "val mAP@50": r["val_map50_per_epoch"]})
              for m, r in view.first_seed_results.items() if r and r.get("val_map50_per_epoch")}
    made = [{"kind": "caption", "text": f"Green: ground truth; red: detections with score ≥ {settings.draw_score} "
                                        f"on each method's fused image ({view.model.summary}, seed {view.seeds[0]})."},
            *grids]
    if curves:
        made.append({"kind": "curves", "name": "validation", "x": "epoch", "series": curves,
                     "title": f"{view.model.summary}: validation mAP@50 per epoch (selects the evaluated epoch; "
                              f"seed {view.seeds[0]})"})
    return made


def published(model: str) -> Mapping[str, float] | None:
    """S4Fusion's Table VI (YOLOv5s mAP@50 % on M3FD, by lower-case method), beside the YOLOv5s table."""
    if model != "yolov5s":
        return None
    frame = pd.read_csv(io.StringIO((resources.files("detection") / "paper_map50.csv").read_text()), dtype=str)
    return dict(zip(frame["method"], frame["map50"].astype(float)))


TASK = register_task(Task(
    name="detection", title="Object detection", section="detect", settings=DetectionSettings, labels=("boxes",),
    models=MODELS, default_models=("yolov5s",), default=True, statistics=DetectionStatistics(), run=run, protocol=protocol,
    input_keys=INPUT_KEYS, files=DetectionFiles, check=check, figures=figures, published=published,
    recorded_before={"model": "yolov5s"}, migrations=(("detect", "detection/yolov5s"),),
    summary_fields=("selected_epoch", "ultralytics_map50", "val_map50_per_epoch", "weights", "map50", "map50_ci95"),
    published_label="paper mAP@50 (S4Fusion Table VI, M3FD)",
    code=("detection.task",),
))
