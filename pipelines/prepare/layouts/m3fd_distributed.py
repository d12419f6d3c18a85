"""M3FD as its authors distribute it: ``M3FD_Detection/{ir,vi,Annotation}`` (next to ``M3FD_Fusion/``).

The root may be the download folder holding ``M3FD_Detection/`` or that folder itself. Its infrared
images are stored as 24-bit RGB whose three channels are equal; prepare reads them as grey and
refuses one whose channels differ (:mod:`pipelines.prepare.images`). Classes and name aliases are
those of :mod:`.m3fd`. TarDAL's scene file ``meta/scenario.json``, when the download has one, is a
split file: ``pipelines prepare --split-file <root>/meta/scenario.json``.
"""
from __future__ import annotations

from pathlib import Path

from pipelines.prepare.layouts.base import Layout, LayoutKind, child_dir, has_dirs
from pipelines.prepare.layouts.m3fd import ANNOTATION_DIRS, m3fd_layout

DETECTION_DIR = "m3fd_detection"


def _detection_root(root: Path) -> Path:
    return child_dir(root, DETECTION_DIR) or root


def _recognise(root: Path) -> bool:
    return has_dirs(_detection_root(root), "ir", "vi", ANNOTATION_DIRS)


def _open(root: Path, labels: str | None) -> Layout:
    return m3fd_layout("m3fd-distributed", _detection_root(root), "ir", "vi")


KIND = LayoutKind("m3fd-distributed", "M3FD as distributed: M3FD_Detection/{ir,vi,Annotation}",
                  _recognise, _open)
