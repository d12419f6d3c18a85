"""MSRS with its detection labels: ``ir/``, ``vi/``, ``labels/{infrared,visible,fusion}/*.txt`` (YOLO).

The label repository annotates each modality separately; ``fusion/`` (boxes of objects visible in
either modality) is used unless the label variant names another one. Classes come from
``classes.txt`` (in the variant folder, ``labels/`` or the root) when there is one, otherwise the
published order :data:`MSRS_CLASSES`.
"""
from __future__ import annotations

import logging
from pathlib import Path

from pipelines.prepare.layouts.base import (
    ImageFolders,
    Layout,
    LayoutKind,
    child_dir,
    find_classes_file,
    has_dirs,
    read_classes,
    required_dir,
)
from pipelines.prepare.problems import PrepareError

log = logging.getLogger("pipelines.prepare")

MSRS_CLASSES = ("person", "bicycle", "car")
VARIANTS = ("infrared", "visible", "fusion")
DEFAULT_VARIANT = "fusion"


def _recognise(root: Path) -> bool:
    labels = child_dir(root, "labels") if has_dirs(root, "ir", "vi") else None
    return labels is not None and any(child_dir(labels, v) for v in VARIANTS)


def _open(root: Path, variant: str | None) -> Layout:
    variant = variant or DEFAULT_VARIANT
    if variant.lower() not in VARIANTS:
        raise PrepareError(f"label variant {variant!r}: the msrs layout has {', '.join(VARIANTS)}")
    labels = required_dir(root, "msrs", "labels")
    annotations = required_dir(labels, "msrs", variant.lower())
    classes_file = find_classes_file(annotations, labels, root)
    if classes_file is None:
        log.info("%s: no classes.txt; using the published MSRS classes %s", labels, list(MSRS_CLASSES))
    classes = read_classes(classes_file) if classes_file else MSRS_CLASSES
    folders = (ImageFolders(required_dir(root, "msrs", "ir"), required_dir(root, "msrs", "vi")),)
    return Layout("msrs", root, folders, annotations, ".txt", classes)


KIND = LayoutKind("msrs", "MSRS detection: ir/, vi/, labels/{infrared,visible,fusion}/*.txt",
                  _recognise, _open, label_variants=True)
