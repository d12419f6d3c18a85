"""MSRS as distributed for segmentation: ``{train,test}/{ir,vi,Segmentation_labels}/`` (SeAFusion's copy
names the label folder ``Label/``).

The official split is the folder a pair sits in (val is carved from train by the config's ratio and seed,
as for LLVIP). Labels are MFNet's nine classes (unlabelled, car, person, bike, curve, car_stop, guardrail,
color_cone, bump) as class-index PNGs; colour-coded copies in MFNet's palette are read through it. MSRS
publishes no boxes with this download: the detection task needs the ``msrs`` layout's labels.
"""
from __future__ import annotations

from pathlib import Path

from pipelines.prepare.layouts.base import ImageFolders, Layout, LayoutKind, Masks, child_dir, has_dirs, required_dir
from segmentation.masks import IGNORE, IGNORE_COLOUR, MFNET_CLASSES, MFNET_PALETTE

SPLITS = ("train", "test")
LABEL_DIRS = ("segmentation_labels", "label", "labels")


def _recognise(root: Path) -> bool:
    return all(has_dirs(root / split, "ir", "vi", LABEL_DIRS) for split in SPLITS if (root / split).is_dir()) and \
        has_dirs(root, *SPLITS)


def _open(root: Path, labels: str | None) -> Layout:
    folders = []
    for split in SPLITS:
        part = required_dir(root, "msrs_segmentation", split)
        folders.append(ImageFolders(required_dir(part, "msrs_segmentation", "ir"),
                                    required_dir(part, "msrs_segmentation", "vi"), split,
                                    masks=child_dir(part, *LABEL_DIRS)))
    palette = {**{colour: index for index, colour in enumerate(MFNET_PALETTE)}, IGNORE_COLOUR: IGNORE}
    return Layout("msrs_segmentation", root, tuple(folders), None, ".txt", (), masks=Masks(MFNET_CLASSES, palette=palette))


KIND = LayoutKind("msrs_segmentation", "MSRS segmentation: {train,test}/{ir,vi,Segmentation_labels (or Label)}/",
                  _recognise, _open)
