"""What every dataset layout describes: where its IR/VI pairs and annotations are, and how to read them.

A layout module defines one :class:`LayoutKind` (its name, how it recognises a folder, and how it
opens one into a :class:`Layout`); :mod:`pipelines.prepare.layouts` lists them. This module holds
the shared pieces: folder lookup in any case and ``classes.txt``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Mapping

from pipelines.prepare.problems import PrepareError


@dataclass(frozen=True)
class ImageFolders:
    """One folder of infrared and one of visible images, paired by stem (and, for segmentation, the folder
    of their class-index masks)."""
    ir: Path
    vi: Path
    split: str | None = None    # the dataset's official split of these pairs (LLVIP), None when it has none
    masks: Path | None = None   # <stem>.png class-index masks of these pairs, when the layout has them


@dataclass(frozen=True)
class Masks:
    """A layout's segmentation labels: class-index masks (``<stem>.png``), their classes in index order,
    the value that means "ignore", and how colour masks map to indices (None: masks hold indices)."""
    classes: tuple[str, ...]
    ignore: int = 255
    palette: Mapping[tuple[int, int, int], int] | None = None


@dataclass(frozen=True)
class Layout:
    name: str
    root: Path
    folders: tuple[ImageFolders, ...]
    annotation_dir: Path | None             # None: no boxes (a segmentation-only dataset)
    annotation_suffix: str                  # ".xml" (Pascal VOC) or ".txt" (YOLO)
    classes: tuple[str, ...]
    aliases: Mapping[str, str] = field(default_factory=dict)   # VOC name (lower case) -> class name
    masks: Masks | None = None              # segmentation labels (each folder's ``masks``), None: none

    @property
    def has_official_split(self) -> bool:
        return any(f.split for f in self.folders)

    @property
    def label_kinds(self) -> tuple[str, ...]:
        """What downstream tasks can learn from it: ``boxes`` (detection), ``masks`` (segmentation)."""
        return (*(("boxes",) if self.annotation_dir else ()), *(("masks",) if self.masks else ()))


@dataclass(frozen=True)
class LayoutKind:
    name: str
    summary: str                                     # one line for help texts and errors
    recognise: Callable[[Path], bool]                # does this root folder look like the layout?
    open: Callable[[Path, str | None], Layout]       # (root, label variant) -> Layout; raises PrepareError
    label_variants: bool = False                     # whether a label variant (data.labels) means anything


def child_dir(parent: Path, *names: str) -> Path | None:
    """The sub-folder of ``parent`` named like one of ``names`` (lower case), in any case."""
    if not parent.is_dir():
        return None
    matches = sorted(p for p in parent.iterdir() if p.is_dir() and p.name.lower() in names)
    if len(matches) > 1:
        raise PrepareError(f"{parent}: folders {[m.name for m in matches]} are ambiguous; keep one")
    return matches[0] if matches else None


def has_dirs(parent: Path, *names: str) -> bool:
    """Whether ``parent`` has a sub-folder for each of ``names`` (each a lower-case name or a tuple of them)."""
    try:
        return all(child_dir(parent, *((n,) if isinstance(n, str) else n)) is not None for n in names)
    except PrepareError:
        return True   # ambiguous folders: recognised, so that opening reports the ambiguity


def required_dir(parent: Path, layout: str, *names: str) -> Path:
    found = child_dir(parent, *names)
    if found is None:
        raise PrepareError(f"{parent}: no {' or '.join(n + '/' for n in names)} folder (any case), "
                           f"required by the {layout} layout")
    return found


def read_classes(path: Path) -> tuple[str, ...]:
    """``classes.txt``: one name per line in class-index order, or ``<index> <name>`` lines."""
    names: dict[int, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) >= 2 and parts[0].isdigit():
            index, name = int(parts[0]), " ".join(parts[1:])
        else:
            index, name = len(names), line.strip()
        if index in names:
            raise PrepareError(f"{path}:{number}: class index {index} given twice")
        names[index] = name
    if not names or sorted(names) != list(range(len(names))):
        raise PrepareError(f"{path}: class indices must be 0..N-1 without gaps, got {sorted(names)}")
    return tuple(names[i] for i in range(len(names)))


def find_classes_file(*folders: Path) -> Path | None:
    """The first ``classes.txt`` among ``folders``."""
    return next((d / "classes.txt" for d in folders if (d / "classes.txt").is_file()), None)


def has_yolo_files(folder: Path) -> bool:
    return any(p.suffix.lower() == ".txt" and p.stem.lower() != "classes" for p in folder.iterdir())


MASK_FOLDERS = ("masks",)   # the generic convention: <root>/masks/<stem>.png beside masks/classes.txt


def with_masks(layout: Layout) -> Layout:
    """``layout`` with the generic mask folder when ``<root>/masks/`` exists (any layout may carry one):
    class-index PNGs named by stem and a ``classes.txt`` of the segmentation classes in it."""
    folder = child_dir(layout.root, *MASK_FOLDERS)
    if folder is None:
        return layout
    classes = folder / "classes.txt"
    if not classes.is_file():
        raise PrepareError(f"{folder}: masks without a classes.txt (one segmentation class name per line, "
                           f"in index order)")
    folders = tuple(replace(f, masks=folder) for f in layout.folders)
    return replace(layout, folders=folders, masks=Masks(read_classes(classes)))
