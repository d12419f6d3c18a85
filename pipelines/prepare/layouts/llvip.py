"""LLVIP: ``infrared/{train,test}/``, ``visible/{train,test}/`` (JPEG) and ``Annotations/*.xml``.

One class, ``person`` (VOC names matched case-insensitively). The official train/test split is the
folder each pair sits in; with ``data.split.by: auto`` (the default) it is used as published, and
val is carved from train by the configured ratio and seed (LLVIP publishes no val split).
"""
from __future__ import annotations

from pathlib import Path

from pipelines.prepare.layouts.base import ImageFolders, Layout, LayoutKind, has_dirs, required_dir

LLVIP_CLASSES = ("person",)
LLVIP_SPLITS = ("train", "test")


def _recognise(root: Path) -> bool:
    return has_dirs(root, "infrared", "visible") and all(
        has_dirs(root / side, *LLVIP_SPLITS) for side in ("infrared", "visible") if (root / side).is_dir())


def _open(root: Path, labels: str | None) -> Layout:
    infrared, visible = required_dir(root, "llvip", "infrared"), required_dir(root, "llvip", "visible")
    folders = tuple(ImageFolders(required_dir(infrared, "llvip", split), required_dir(visible, "llvip", split), split)
                    for split in LLVIP_SPLITS)
    return Layout("llvip", root, folders, required_dir(root, "llvip", "annotations", "annotation"), ".xml",
                  LLVIP_CLASSES)


KIND = LayoutKind("llvip", "LLVIP: infrared/{train,test}, visible/{train,test}, Annotations/*.xml",
                  _recognise, _open)
