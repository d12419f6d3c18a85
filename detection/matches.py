"""Per-image matches: what COCO evaluation decides once per image, so statistics never rerun a detector.

COCOeval matches each detection to ground truth within its own image and class; resampling test images
never changes a match, only which images are accumulated. :func:`match` runs pycocotools' own matching
(``COCOeval.evaluate``, bbox, all areas, 100 detections per image and class) and keeps, per detection,
its image, class, score and, per IoU threshold of 0.50:0.95, whether it is a true positive (1), a false
positive (0) or ignored (-1: matched to a crowd box), plus the number of non-ignored ground-truth boxes
per (image, class). :mod:`detection.accumulate` turns these into AP for any weighting of the images.

Detections are stored per class in COCOeval's accumulation order (images by id, each image's detections
by score, then a stable sort by score), so the accumulation reproduces pycocotools' AP exactly.
"""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from detection.coco_eval import CocoError, _check_detections

MAX_DETECTIONS = 100  # per image and class, COCOeval's largest maxDets (the one mAP uses)
COCO_AREA_ALL = (0.0, 1e10)  # COCOeval's "all" area range: ground truth outside it is ignored
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Matches:
    """One detector's matched detections on one test set.

    ``image``, ``klass``, ``score`` and ``codes`` (N, T) are per detection, grouped by class (ascending)
    in accumulation order; ``gt_counts`` (images, classes) counts non-ignored ground-truth boxes.
    """

    images: tuple[str, ...]
    classes: tuple[str, ...]
    iou_thresholds: np.ndarray
    image: np.ndarray
    klass: np.ndarray
    score: np.ndarray
    codes: np.ndarray
    gt_counts: np.ndarray

    def class_bounds(self) -> np.ndarray:
        """Start offsets of each class's detections, with the end as a last entry (length classes + 1)."""
        return np.searchsorted(self.klass, np.arange(len(self.classes) + 1), side="left").astype(np.int64)


def match(gt, detections: list[dict]) -> Matches:
    """Match COCO ``detections`` to the ground truth ``gt`` (a ``pycocotools.coco.COCO``) as COCOeval does."""
    from pycocotools.cocoeval import COCOeval

    image_ids = sorted(gt.getImgIds())
    category_ids = sorted(gt.getCatIds())
    names = {c["id"]: c["name"] for c in gt.dataset["categories"]}
    files = {image["id"]: image["file_name"] for image in gt.dataset["images"]}
    classes = tuple(names[c] for c in category_ids)
    thresholds = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
    gt_counts = _ground_truth_counts(gt, image_ids, category_ids)
    per_class: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    if detections:
        _check_detections(gt, detections)
        with contextlib.redirect_stdout(io.StringIO()):
            coco_eval = COCOeval(gt, gt.loadRes(detections), "bbox")
            coco_eval.evaluate()
        if not np.array_equal(coco_eval.params.iouThrs, thresholds):
            raise CocoError(f"pycocotools' IoU thresholds {coco_eval.params.iouThrs} are not 0.50:0.05:0.95")
        per_class = _matched(coco_eval, len(image_ids), len(category_ids))
    image, klass, score, codes = [], [], [], []
    for k, (img, scr, cod) in enumerate(per_class):
        image.append(img)
        klass.append(np.full(len(img), k, np.int16))
        score.append(scr)
        codes.append(cod)
    empty = len(image) == 0
    return Matches(
        images=tuple(files[i] for i in image_ids), classes=classes, iou_thresholds=thresholds,
        image=np.zeros(0, np.int32) if empty else np.concatenate(image).astype(np.int32),
        klass=np.zeros(0, np.int16) if empty else np.concatenate(klass),
        score=np.zeros(0) if empty else np.concatenate(score),
        codes=np.zeros((0, len(thresholds)), np.int8) if empty else np.concatenate(codes),
        gt_counts=gt_counts)


def _matched(coco_eval, n_images: int, n_classes: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per class: image index, score and codes (N, T) of its detections in COCOeval's accumulation order."""
    areas = len(coco_eval.params.areaRng)
    out = []
    for k in range(n_classes):
        images, scores, codes = [], [], []
        for i in range(n_images):
            e = coco_eval.evalImgs[k * areas * n_images + i]  # area index 0: "all"
            if e is None or not e["dtScores"]:
                continue
            matched = np.asarray(e["dtMatches"])[:, :MAX_DETECTIONS] > 0
            ignored = np.asarray(e["dtIgnore"])[:, :MAX_DETECTIONS].astype(bool)
            code = np.where(ignored, -1, matched.astype(np.int8)).T  # (D, T)
            images.append(np.full(code.shape[0], i, np.int32))
            scores.append(np.asarray(e["dtScores"][:MAX_DETECTIONS], float))
            codes.append(code.astype(np.int8))
        if not scores:
            out.append((np.zeros(0, np.int32), np.zeros(0), np.zeros((0, len(coco_eval.params.iouThrs)), np.int8)))
            continue
        score = np.concatenate(scores)
        order = np.argsort(-score, kind="mergesort")
        out.append((np.concatenate(images)[order], score[order], np.concatenate(codes)[order]))
    return out


def _ground_truth_counts(gt, image_ids: list[int], category_ids: list[int]) -> np.ndarray:
    """Boxes COCOeval counts per (image, class): not crowd, area within the "all" range."""
    row = {image_id: i for i, image_id in enumerate(image_ids)}
    column = {category_id: k for k, category_id in enumerate(category_ids)}
    counts = np.zeros((len(image_ids), len(category_ids)), np.int32)
    for annotation in gt.dataset["annotations"]:
        crowd = bool(annotation.get("iscrowd", 0))
        area = float(annotation.get("area", 0.0))
        if not crowd and COCO_AREA_ALL[0] <= area <= COCO_AREA_ALL[1]:
            counts[row[annotation["image_id"]], column[annotation["category_id"]]] += 1
    return counts


def to_bytes(matches: Matches) -> bytes:
    """``matches`` as a compressed npz file's content (the caller writes it atomically)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, version=np.array(FORMAT_VERSION), images=np.array(matches.images),
                        classes=np.array(matches.classes), iou_thresholds=matches.iou_thresholds,
                        image=matches.image, klass=matches.klass, score=matches.score, codes=matches.codes,
                        gt_counts=matches.gt_counts)
    return buffer.getvalue()


def load(path: str | Path) -> Matches:
    """Read a file written from :func:`to_bytes`; a missing or foreign file is a :class:`CocoError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise CocoError(f"{path}: per-image matches not found (rerun `pipelines detect` for this method)")
    try:
        with np.load(path, allow_pickle=False) as data:
            if int(data["version"]) != FORMAT_VERSION:
                raise CocoError(f"{path}: matches format {int(data['version'])}, expected {FORMAT_VERSION}")
            return Matches(images=tuple(str(s) for s in data["images"]), classes=tuple(str(s) for s in data["classes"]),
                           iou_thresholds=data["iou_thresholds"], image=data["image"], klass=data["klass"],
                           score=data["score"], codes=data["codes"], gt_counts=data["gt_counts"])
    except (OSError, KeyError, ValueError) as error:
        raise CocoError(f"{path}: not a per-image matches file ({error})") from error
