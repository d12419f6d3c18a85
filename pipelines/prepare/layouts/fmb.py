"""FMB (SegMiF's release): ``{train,test}/{Infrared,Visible,Label}/``, or the three folders at the root
beside ``train.txt`` / ``test.txt`` (then give those lists as the split: ``--split-file ROOT``).

The official split is the folder a pair is in; FMB publishes no val split, so val is carved from train by
the config's ratio and seed. Labels are class-index PNGs of FMB's 15 classes.
"""
from __future__ import annotations

from pathlib import Path

from pipelines.prepare.layouts.base import ImageFolders, Layout, LayoutKind, Masks, has_dirs, required_dir

FMB_CLASSES = ("background", "Road", "Sidewalk", "Building", "Lamp", "Sign", "Vegetation", "Sky", "Person", "Car",
               "Truck", "Bus", "Motorcycle", "Bicycle", "Pole")
SPLITS = ("train", "test")
FOLDERS = ("infrared", "visible", "label")


def _recognise(root: Path) -> bool:
    return has_dirs(root, *FOLDERS) or (has_dirs(root, *SPLITS) and has_dirs(root / "train", *FOLDERS))


def _open(root: Path, labels: str | None) -> Layout:
    if has_dirs(root, *SPLITS):
        folders = tuple(_folders(required_dir(root, "fmb", split), split) for split in SPLITS)
    else:
        folders = (_folders(root, None),)
    return Layout("fmb", root, folders, None, ".txt", (), masks=Masks(FMB_CLASSES))


def _folders(parent: Path, split: str | None) -> ImageFolders:
    return ImageFolders(required_dir(parent, "fmb", "infrared"), required_dir(parent, "fmb", "visible"), split,
                        masks=required_dir(parent, "fmb", "label"))


KIND = LayoutKind("fmb", "FMB: {train,test}/{Infrared,Visible,Label}/ (or those folders with train.txt, test.txt)",
                  _recognise, _open)
