"""COCO-format detections and their evaluation with pycocotools (the reference mAP implementation).

Conventions shared with the ground truth files: a detector class index ``c`` is COCO category ``c + 1``;
images are matched to ground truth by ``file_name``; boxes are ``[x, y, width, height]`` in pixels.
AP@50 per class is read from COCOeval's precision table at IoU 0.5, all areas, 100 detections per
image; a class without ground truth boxes has no AP (``None``), never zero.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from fusionbench.errors import FusionBenchError

log = logging.getLogger(__name__)


class CocoError(FusionBenchError):
    """A ground-truth or detection file that cannot be evaluated."""


@dataclass(frozen=True)
class ImageDetections:
    """A detector's output for one image: boxes as (N, 4) x1 y1 x2 y2 pixels, scores, 0-based classes."""

    file_name: str
    boxes_xyxy: np.ndarray
    scores: np.ndarray
    classes: np.ndarray


@dataclass(frozen=True)
class CocoScores:
    map50: float | None
    map50_95: float | None
    per_class: dict[str, float | None]


def load_ground_truth(path: str | Path):
    """The COCO ground truth as a ``pycocotools.coco.COCO`` object (its own prints silenced)."""
    from pycocotools.coco import COCO

    path = Path(path)
    if not path.is_file():
        raise CocoError(f"{path}: COCO ground truth not found")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise CocoError(f"{path}: not valid JSON: {error}") from error
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise CocoError(f"{path}: COCO ground truth needs a list {key!r}")
    gt = COCO()
    gt.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def to_coco_detections(predictions: Iterable[ImageDetections], gt) -> list[dict]:
    """COCO result records for ``predictions``; image ids come from the ground truth's file names."""
    ids = {image["file_name"]: image["id"] for image in gt.dataset["images"]}
    categories = set(gt.getCatIds())
    records = []
    for image in predictions:
        if image.file_name not in ids:
            raise CocoError(f"{image.file_name}: no image of that file name in the ground truth")
        for (x1, y1, x2, y2), score, cls in zip(image.boxes_xyxy.tolist(), image.scores.tolist(),
                                                  image.classes.tolist()):
            category = int(cls) + 1
            if category not in categories:
                raise CocoError(f"{image.file_name}: class index {int(cls)} has no COCO category {category}")
            records.append({
                "image_id": ids[image.file_name],
                "category_id": category,
                "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
                "score": round(float(score), 5),
            })
    return records


def evaluate(gt, detections: list[dict]) -> CocoScores:
    """COCOeval (bbox) of ``detections`` against ``gt``: mAP@50, mAP@50:95 and AP@50 per category name."""
    from pycocotools.cocoeval import COCOeval

    names = {c["id"]: c["name"] for c in gt.dataset["categories"]}
    with_boxes = {a["category_id"] for a in gt.dataset["annotations"]}
    if not detections:  # loadRes cannot take an empty list; nothing detected scores zero where boxes exist
        per_class = {names[c]: (0.0 if c in with_boxes else None) for c in sorted(names)}
        overall = 0.0 if with_boxes else None
        return CocoScores(overall, overall, per_class)
    _check_detections(gt, detections)
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        result = gt.loadRes(detections)
        coco_eval = COCOeval(gt, result, "bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    log.debug("COCOeval summary:\n%s", printed.getvalue())
    precision = coco_eval.eval["precision"]  # [IoU thresholds, recall points, categories, areas, max dets]
    per_class = {}
    for k, category in enumerate(coco_eval.params.catIds):
        curve = precision[0, :, k, 0, -1]
        per_class[names[category]] = float(curve.mean()) if (curve > -1).all() else None
    stats = coco_eval.stats
    return CocoScores(_score(stats[1]), _score(stats[0]), per_class)


def _score(value: float) -> float | None:
    return None if value < 0 else float(value)  # COCOeval writes -1 where no category has ground truth


def _check_detections(gt, detections: list[dict]) -> None:
    """Catch what ``loadRes`` would only assert on, with a message naming the problem."""
    images, categories = set(gt.getImgIds()), set(gt.getCatIds())
    for i, record in enumerate(detections):
        missing = {"image_id", "category_id", "bbox", "score"} - record.keys()
        if missing:
            raise CocoError(f"detection {i}: missing {sorted(missing)}")
        if record["image_id"] not in images:
            raise CocoError(f"detection {i}: image_id {record['image_id']} is not in the ground truth")
        if record["category_id"] not in categories:
            raise CocoError(f"detection {i}: category_id {record['category_id']} is not in the ground truth")
