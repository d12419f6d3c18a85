"""M3FD's detection part with the folder names ``Ir/``, ``Vis/``, ``Annotation/`` (Pascal VOC).

The classes are :data:`fusionbench.benchmark.M3FD_CLASSES` in that fixed order, never the order of
appearance nor another repository's order (TarDAL's loader lists People, Car, Bus, Lamp,
Motorcycle, Truck): boxes are mapped by *name*, case-insensitively, with the aliases of
:data:`M3FD_ALIASES`. ``Annotations/`` is accepted for ``Annotation/``.
"""
from __future__ import annotations

from pathlib import Path

from fusionbench.benchmark import M3FD_CLASSES
from pipelines.prepare.layouts.base import ImageFolders, Layout, LayoutKind, has_dirs, required_dir

ANNOTATION_DIRS = ("annotation", "annotations")   # the release says Annotation/; some copies use the plural
# Names other conversions of M3FD use for its classes (lower case) -> the class they mean.
M3FD_ALIASES = {"person": "People", "pedestrian": "People", "motorbike": "Motorcycle",
                "streetlamp": "Lamp", "street lamp": "Lamp"}


def m3fd_layout(name: str, root: Path, ir: str, vi: str) -> Layout:
    """An M3FD folder whose infrared and visible sub-folders are named ``ir`` and ``vi`` (any case)."""
    return Layout(name, root, (ImageFolders(required_dir(root, name, ir), required_dir(root, name, vi)),),
                  required_dir(root, name, *ANNOTATION_DIRS), ".xml", M3FD_CLASSES, M3FD_ALIASES)


def _open(root: Path, labels: str | None) -> Layout:
    return m3fd_layout("m3fd", root, "ir", "vis")


KIND = LayoutKind("m3fd", "M3FD with Ir/, Vis/, Annotation/*.xml",
                  lambda root: has_dirs(root, "vis", ANNOTATION_DIRS), _open)
