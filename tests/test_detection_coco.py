"""COCO detections and COCOeval: hand-made files with known answers, and the prepared ground truth."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from detection.coco_eval import CocoError, ImageDetections, evaluate, load_ground_truth, to_coco_detections
from fusionbench.benchmark import M3FD_CLASSES

# One 200x100 image per class, each holding one box of its class at a different place.
BOXES = {cls: [10.0 + 20 * i, 10.0 + 5 * i, 40.0 + 20 * i, 60.0 + 5 * i] for i, cls in enumerate(M3FD_CLASSES)}


def write_ground_truth(path: Path, boxes_per_image: dict[str, list[tuple[int, list[float]]]],
                       classes=M3FD_CLASSES) -> Path:
    """COCO ground truth in the benchmark's convention: ids 1.., category id = class index + 1."""
    images, annotations = [], []
    for image_id, (name, boxes) in enumerate(boxes_per_image.items(), start=1):
        images.append({"id": image_id, "file_name": name, "width": 200, "height": 100})
        for cls, (x1, y1, x2, y2) in boxes:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": cls + 1,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(classes)]
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def one_box_per_class(tmp_path: Path):
    truth = {f"{cls}.png": [(i, BOXES[cls])] for i, cls in enumerate(M3FD_CLASSES)}
    return load_ground_truth(write_ground_truth(tmp_path / "gt.json", truth)), truth


def detections_for(truth, classes_of=lambda cls: cls, skip=()) -> list[ImageDetections]:
    """Detections that copy the ground truth boxes (score 0.9), with the class index mapped by ``classes_of``."""
    out = []
    for name, boxes in truth.items():
        kept = [(cls, box) for cls, box in boxes if cls not in skip]
        out.append(ImageDetections(name, np.array([b for _, b in kept], dtype=float).reshape(-1, 4),
                                   np.full(len(kept), 0.9), np.array([classes_of(c) for c, _ in kept], dtype=int)))
    return out


def test_perfect_detections_score_one_for_all_six_m3fd_classes(tmp_path):
    gt, truth = one_box_per_class(tmp_path)
    records = to_coco_detections(detections_for(truth), gt)
    # category id = class index + 1, image id from the ground truth's file name
    by_image = {r["image_id"]: r["category_id"] for r in records}
    ids = {img["file_name"]: img["id"] for img in gt.dataset["images"]}
    assert by_image == {ids[f"{cls}.png"]: i + 1 for i, cls in enumerate(M3FD_CLASSES)}
    scores = evaluate(gt, records)
    assert scores.map50 == pytest.approx(1.0) and scores.map50_95 == pytest.approx(1.0)
    assert scores.per_class == {cls: pytest.approx(1.0) for cls in M3FD_CLASSES}


def test_shifted_class_mapping_scores_zero(tmp_path):
    gt, truth = one_box_per_class(tmp_path)
    shifted = detections_for(truth, classes_of=lambda c: (c + 1) % len(M3FD_CLASSES))
    scores = evaluate(gt, to_coco_detections(shifted, gt))
    assert scores.map50 == 0.0 and set(scores.per_class.values()) == {0.0}


def test_missing_class_gets_zero_and_lowers_the_mean(tmp_path):
    gt, truth = one_box_per_class(tmp_path)
    bus = M3FD_CLASSES.index("Bus")
    scores = evaluate(gt, to_coco_detections(detections_for(truth, skip={bus}), gt))
    assert scores.per_class["Bus"] == 0.0
    assert all(scores.per_class[c] == pytest.approx(1.0) for c in M3FD_CLASSES if c != "Bus")
    assert scores.map50 == pytest.approx(5 / 6)


def test_half_recall_gives_the_hand_computed_ap(tmp_path):
    """Two people, one found (score 0.9) and one false alarm (0.8): precision 1 up to recall 0.5, then nothing;
    COCO's 101 recall points give 51 / 101."""
    truth = {"a.png": [(0, [0.0, 0.0, 20.0, 40.0]), (0, [100.0, 0.0, 120.0, 40.0])]}
    gt = load_ground_truth(write_ground_truth(tmp_path / "gt.json", truth, classes=("People",)))
    found = ImageDetections("a.png", np.array([[0.0, 0.0, 20.0, 40.0], [50.0, 50.0, 70.0, 90.0]]),
                            np.array([0.9, 0.8]), np.array([0, 0]))
    scores = evaluate(gt, to_coco_detections([found], gt))
    assert scores.per_class["People"] == pytest.approx(51 / 101)


def test_class_without_ground_truth_has_no_ap_and_empty_detections_score_zero(tmp_path):
    truth = {"a.png": [(1, BOXES["Car"])]}
    gt = load_ground_truth(write_ground_truth(tmp_path / "gt.json", truth))
    scores = evaluate(gt, [])
    assert scores.per_class["Car"] == 0.0 and scores.per_class["People"] is None and scores.map50 == 0.0
    scores = evaluate(gt, to_coco_detections(detections_for(truth), gt))
    assert scores.per_class["Car"] == pytest.approx(1.0) and scores.per_class["Truck"] is None
    assert scores.map50 == pytest.approx(1.0)  # the mean skips classes without ground truth


def test_bad_inputs_are_named(tmp_path):
    gt, truth = one_box_per_class(tmp_path)
    with pytest.raises(CocoError, match="nope.png"):
        to_coco_detections([ImageDetections("nope.png", np.zeros((0, 4)), np.zeros(0), np.zeros(0, int))], gt)
    with pytest.raises(CocoError, match="class index 6"):
        to_coco_detections([ImageDetections("Car.png", np.ones((1, 4)), np.ones(1), np.array([6]))], gt)
    with pytest.raises(CocoError, match="image_id 99"):
        evaluate(gt, [{"image_id": 99, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1.0}])
    with pytest.raises(CocoError, match="missing.json"):
        load_ground_truth(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(CocoError, match="broken.json: not valid JSON"):
        load_ground_truth(tmp_path / "broken.json")


def test_prepared_ground_truth_matches_the_yolo_labels(msrs_benchmark):
    """Detections made from the benchmark's YOLO test labels score 1.0 against its COCO test file:
    the prepare and detect stages agree on file names, image ids, category ids and box units."""
    gt = load_ground_truth(msrs_benchmark.coco_path("test"))
    predictions = []
    for pair in msrs_benchmark.pairs("test"):
        rows = np.loadtxt(msrs_benchmark.labels_dir("test") / f"{pair.stem}.txt", ndmin=2).reshape(-1, 5)
        cx, cy, w, h = (rows[:, 1:] * [pair.width, pair.height, pair.width, pair.height]).T
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        predictions.append(ImageDetections(f"{pair.stem}.png", boxes, np.full(len(rows), 0.5), rows[:, 0].astype(int)))
    scores = evaluate(gt, to_coco_detections(predictions, gt))
    with_boxes = {msrs_benchmark.classes[a["category_id"] - 1] for a in gt.dataset["annotations"]}
    assert with_boxes and scores.map50 == pytest.approx(1.0)
    assert {c: v for c, v in scores.per_class.items() if v is not None} == {c: pytest.approx(1.0) for c in with_boxes}
