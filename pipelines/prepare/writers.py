"""Writing the benchmark folder described in :mod:`fusionbench.benchmark`.

Every file is written atomically and only when its content changes, and nothing written holds a
timestamp: preparing the same files with the same seed twice gives byte-identical outputs.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from fusionbench.benchmark import split_list_path
from fusionbench.files import write_text_if_changed
from pipelines.prepare.annotations import Box


def write_json(path: Path, data: Any) -> None:
    write_text_if_changed(path, json.dumps(data, indent=1) + "\n")


def write_split_list(out: Path, split: str, stems: list[str]) -> None:
    """``splits/<split>.txt``: one stem per line, sorted."""
    write_text_if_changed(split_list_path(out, split), "".join(f"{s}\n" for s in sorted(stems)))


def yolo_text(boxes: Iterable[Box], width: int, height: int) -> str:
    """``cls cx cy w h`` normalised to the image size, one box per line (empty: background)."""
    return "".join(
        f"{b.cls} {(b.x1 + b.x2) / 2 / width:.6f} {(b.y1 + b.y2) / 2 / height:.6f} "
        f"{(b.x2 - b.x1) / width:.6f} {(b.y2 - b.y1) / height:.6f}\n"
        for b in boxes
    )


def write_yolo_labels(folder: Path, labels: dict[str, str], dataset_stems: Iterable[str]) -> None:
    """``<stem>.txt`` for each stem of ``labels``; the file of any other pair of the dataset (``dataset_stems``),
    left by an earlier, different split, is removed. Nothing else in ``folder`` is touched: prepare never
    deletes a file it did not write."""
    folder.mkdir(parents=True, exist_ok=True)
    for stem in sorted(set(dataset_stems) - set(labels)):
        (folder / f"{stem}.txt").unlink(missing_ok=True)
    for stem, text in labels.items():
        write_text_if_changed(folder / f"{stem}.txt", text)


def coco_dataset(images: list[tuple[str, int, int, list[Box]]], classes: list[str]) -> dict[str, Any]:
    """COCO ground truth for one split; ``images`` are (stem, width, height, boxes) in split-list order.
    Image id = 1-based position, file_name = ``<stem>.png``, category id = class index + 1."""
    coco_images, annotations = [], []
    for image_id, (stem, width, height, boxes) in enumerate(images, 1):
        coco_images.append({"id": image_id, "file_name": f"{stem}.png", "width": width, "height": height})
        for box in boxes:
            w, h = box.x2 - box.x1, box.y2 - box.y1
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": box.cls + 1,
                "bbox": [round(box.x1, 3), round(box.y1, 3), round(w, 3), round(h, 3)],
                "area": round(w * h, 3), "iscrowd": 0,
            })
    categories = [{"id": i + 1, "name": name, "supercategory": "object"} for i, name in enumerate(classes)]
    return {"info": {"description": "fusionbench ground truth"}, "licenses": [],
            "images": coco_images, "annotations": annotations, "categories": categories}
