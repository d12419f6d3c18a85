"""Reading boxes: Pascal VOC XML (M3FD) and YOLO text (generic), both into pixel corner boxes.

VOC coordinates follow Pascal VOC (and LabelImg): 1-based pixel indices, both ends included, so
``xmin=1, xmax=W`` spans the whole width; corners are ``(xmin - 1, ymin - 1, xmax, ymax)``.

Boxes reaching outside the image are clipped and boxes of zero area dropped; both are counted
and reported as warnings naming the file. Anything that makes a file unusable (XML that does not
parse, an unknown class, a malformed line) raises :class:`AnnotationError`.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from fusionbench.errors import FusionBenchError

ROUNDING_PX = 1e-3   # normalised YOLO coordinates may overshoot an edge by float rounding: not a clip


class AnnotationError(FusionBenchError):
    """An annotation file that cannot be used; the message names the file."""


@dataclass(frozen=True)
class Box:
    cls: int       # index into the benchmark's class list
    x1: float      # pixel corners, 0 <= x1 < x2 <= width (after cleaning)
    y1: float
    x2: float
    y2: float


@dataclass
class Cleaned:
    """The boxes kept for one image and what had to be fixed."""
    boxes: list[Box]
    clipped: int = 0
    dropped: int = 0
    warnings: list[str] = field(default_factory=list)


def read_boxes(path: Path | None, classes: tuple[str, ...], width: int, height: int,
               aliases: Mapping[str, str] | None = None) -> Cleaned:
    """Boxes of one image; no annotation file means a background image (no objects). VOC class
    names are matched case-insensitively, and through ``aliases`` (lower-case name -> class name)."""
    if path is None:
        return Cleaned([])
    if path.suffix.lower() == ".xml":
        boxes = _read_voc(path, classes, aliases or {})
    else:
        boxes = _read_yolo(path, classes, width, height)
    return _clean(boxes, path, width, height)


def _read_voc(path: Path, classes: tuple[str, ...], aliases: Mapping[str, str]) -> list[Box]:
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as error:
        raise AnnotationError(f"{path}: XML does not parse ({error})") from error
    index = {name.lower(): i for i, name in enumerate(classes)}
    index.update({alias.lower(): index[name.lower()] for alias, name in aliases.items()})
    boxes, unknown = [], []
    for number, obj in enumerate(root.iter("object"), 1):
        name = (obj.findtext("name") or "").strip()
        if name.lower() not in index:
            unknown.append(name or "<empty>")
            continue
        try:
            corners = [float(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")]
        except (TypeError, ValueError) as error:
            raise AnnotationError(f"{path}: object {number} ({name}) has no numeric bndbox "
                                  f"xmin/ymin/xmax/ymax") from error
        xmin, ymin, xmax, ymax = corners
        boxes.append(Box(index[name.lower()], xmin - 1, ymin - 1, xmax, ymax))   # 1-based inclusive -> corners
    if unknown:
        raise AnnotationError(f"{path}: unknown class name(s) {sorted(set(unknown))}; expected one of "
                              f"{list(classes)}" + (f" or an alias {dict(aliases)}" if aliases else ""))
    return boxes


def _read_yolo(path: Path, classes: tuple[str, ...], width: int, height: int) -> list[Box]:
    boxes = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            if len(parts) != 5:
                raise ValueError
            cls_value, cx, cy, w, h = (float(p) for p in parts)
        except ValueError:
            raise AnnotationError(f"{path}:{number}: expected 'class cx cy w h', got {line.strip()!r}") from None
        if cls_value != int(cls_value) or not 0 <= cls_value < len(classes):
            raise AnnotationError(f"{path}:{number}: unknown class {parts[0]} "
                                  f"(classes.txt has {len(classes)}: {list(classes)})")
        boxes.append(Box(int(cls_value), (cx - w / 2) * width, (cy - h / 2) * height,
                         (cx + w / 2) * width, (cy + h / 2) * height))
    return boxes


def _clean(boxes: list[Box], path: Path, width: int, height: int) -> Cleaned:
    result = Cleaned([])
    for number, box in enumerate(boxes, 1):
        x1, x2 = min(max(box.x1, 0.0), width), min(max(box.x2, 0.0), width)
        y1, y2 = min(max(box.y1, 0.0), height), min(max(box.y2, 0.0), height)
        if x2 <= x1 or y2 <= y1:
            result.dropped += 1
            result.warnings.append(f"{path}: box {number} has zero area inside the {width}x{height} "
                                   f"image, dropped")
            continue
        if max(abs(x1 - box.x1), abs(y1 - box.y1), abs(x2 - box.x2), abs(y2 - box.y2)) > ROUNDING_PX:
            result.clipped += 1
            result.warnings.append(f"{path}: box {number} reaches outside the {width}x{height} image, "
                                   f"clipped")
        result.boxes.append(Box(box.cls, x1, y1, x2, y2))
    return result
