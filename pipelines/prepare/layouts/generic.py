"""The generic layout: ``ir/``, ``vi/``, ``labels/*.txt`` (YOLO) and ``classes.txt``.

``classes.txt`` sits in the labels folder, in ``labels/`` or in the root: one name per line, or
``<index> <name>`` lines. A label variant names a sub-folder of ``labels/`` to read instead.
"""
from __future__ import annotations

from pathlib import Path

from pipelines.prepare.layouts.base import (
    ImageFolders,
    Layout,
    LayoutKind,
    child_dir,
    find_classes_file,
    has_dirs,
    has_yolo_files,
    read_classes,
    required_dir,
)
from pipelines.prepare.problems import PrepareError


def _open(root: Path, variant: str | None) -> Layout:
    labels = required_dir(root, "generic", "labels")
    annotations = labels
    if variant:
        annotations = child_dir(labels, variant.lower())
        if annotations is None:
            raise PrepareError(f"{labels}: no {variant}/ sub-folder (the label variant asked for)")
    elif not has_yolo_files(labels):
        raise PrepareError(f"{labels}: no YOLO .txt files (name a sub-folder as the label variant, "
                           f"or use the msrs layout for labels/{{infrared,visible,fusion}}/)")
    classes_file = find_classes_file(annotations, labels, root)
    if classes_file is None:
        raise PrepareError(f"{labels}: classes.txt not found (looked in {annotations}, {labels} and {root})")
    folders = (ImageFolders(required_dir(root, "generic", "ir"), required_dir(root, "generic", "vi")),)
    return Layout("generic", root, folders, annotations, ".txt", read_classes(classes_file))


KIND = LayoutKind("generic", "generic: ir/, vi/, labels/*.txt (YOLO) and classes.txt",
                  lambda root: has_dirs(root, "ir", "vi"), _open, label_variants=True)
