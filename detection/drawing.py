"""Boxes drawn on test images for the report's qualitative grids: ground truth and a detector's detections."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

TRUTH_COLOUR = (40, 200, 40)
DETECTION_COLOUR = (230, 40, 40)


def ground_truth_boxes(coco_path: Path) -> tuple[dict[str, list], dict[int, str]]:
    """Per test image stem: its COCO ``(bbox, category_id)`` boxes; and category id -> class name."""
    coco = json.loads(Path(coco_path).read_text())
    by_id = {image["id"]: Path(image["file_name"]).stem for image in coco["images"]}
    boxes: dict[str, list] = {stem: [] for stem in by_id.values()}
    for annotation in coco["annotations"]:
        boxes[by_id[annotation["image_id"]]].append((annotation["bbox"], annotation["category_id"]))
    return boxes, {c["id"]: c["name"] for c in coco["categories"]}


def draw_boxes(image: np.ndarray, boxes: Sequence[tuple], names: dict[int, str], truth: bool) -> np.ndarray:
    """``boxes`` = ``[(xywh, category_id, score or None)]`` in pixels, drawn with their labels on a copy of an
    RGB uint8 image (green for ground truth, red for detections)."""
    out = np.ascontiguousarray(image.copy())
    colour = TRUTH_COLOUR if truth else DETECTION_COLOUR
    thickness = max(1, round(max(out.shape[:2]) / 300))
    for (x, y, w, h), category, score in boxes:
        cv2.rectangle(out, (round(x), round(y)), (round(x + w), round(y + h)), colour, thickness)
        label = names.get(category, str(category)) + (f" {score:.2f}" if score is not None else "")
        cv2.putText(out, label, (round(x), max(10, round(y) - 2)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.35 * max(1.0, out.shape[1] / 400), colour, 1, cv2.LINE_AA)
    return out
