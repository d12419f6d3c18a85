"""Dataset layouts, as a registry: each layout is a module with one :class:`~.base.LayoutKind`.

To add a layout, write a module beside these (how it recognises a folder, where its pairs and
annotations are) and add its ``KIND`` to :data:`LAYOUTS`. ``auto`` tries them in that order, the
most specific first, and takes the first that recognises the folder.

Folder names and image suffixes are matched case-insensitively. This package only finds files and
pairs them (with :func:`fusionbench.pairing.pair_folders`); reading them is
:mod:`pipelines.prepare.images` and :mod:`pipelines.prepare.annotations`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fusionbench.pairing import index_folder, pair_folders
from pipelines.prepare.layouts import fmb, generic, llvip, m3fd, m3fd_distributed, msrs, msrs_segmentation
from pipelines.prepare.layouts.base import Layout, LayoutKind, Masks, read_classes, with_masks
from pipelines.prepare.problems import PrepareError, Problem

LAYOUTS: dict[str, LayoutKind] = {kind.name: kind for kind in (
    m3fd.KIND, m3fd_distributed.KIND, llvip.KIND, msrs_segmentation.KIND, fmb.KIND, msrs.KIND, generic.KIND)}
AUTO = "auto"

__all__ = ["AUTO", "LAYOUTS", "Layout", "Masks", "Source", "collect_sources", "open_layout", "read_classes"]


@dataclass(frozen=True)
class Source:
    """The files of one pair; ``annotation`` is None for a background image (or a dataset without boxes),
    ``mask`` None for a dataset without segmentation labels."""
    stem: str
    ir: Path
    vi: Path
    annotation: Path | None
    official_split: str | None   # the split the dataset itself puts the pair in (LLVIP), else None
    mask: Path | None = None


def open_layout(root: Path, layout: str = AUTO, labels: str | None = None) -> Layout:
    """Recognise the layout of ``root`` (or check the one asked for) and locate its folders."""
    root = Path(root)
    if not root.is_dir():
        raise PrepareError(f"{root}: raw dataset folder not found")
    if layout != AUTO and layout not in LAYOUTS:
        raise PrepareError(f"unknown layout {layout!r}; expected {AUTO} or one of {list(LAYOUTS)}")
    if layout == AUTO:
        kind = next((k for k in LAYOUTS.values() if k.recognise(root)), None)
        if kind is None:
            raise PrepareError(f"{root}: no known dataset layout recognised; expected one of:\n"
                               + "\n".join(f"  - {k.summary}" for k in LAYOUTS.values()))
    else:
        kind = LAYOUTS[layout]
    if labels and not kind.label_variants:
        raise PrepareError(f"{root}: the {kind.name} layout has no label variants, but {labels!r} was asked for")
    found = kind.open(root, labels)
    return found if found.masks else with_masks(found)


def collect_sources(layout: Layout) -> tuple[list[Source], list[Problem]]:
    """Pair IR, VI, annotation and mask files by stem, sorted by stem; report what does not pair up."""
    problems: list[Problem] = []
    pairs: dict[str, tuple] = {}
    masks: dict[str, Path] = {}
    for folders in layout.folders:
        pairing = pair_folders(folders.ir, folders.vi)
        problems += [Problem(stem, message) for stem, message in pairing.problems()]
        found = index_folder(folders.masks, (".png",), ignore={"classes"}) if folders.masks else None
        if found is not None:
            problems += [Problem(stem, message) for stem, message in found.problems()]
        for pair in pairing.pairs:
            if pair.stem in pairs:
                problems.append(Problem(pair.stem, f"{pair.ir}: stem {pair.stem!r} is also in {pairs[pair.stem][0].parent}"))
                continue
            pairs[pair.stem] = (pair.ir, pair.vi, folders.split)
            if found is not None and pair.stem in found.files:
                masks[pair.stem] = found.files[pair.stem]
            elif found is not None:
                problems.append(Problem(pair.stem, f"{pair.ir}: no mask {pair.stem}.png in {folders.masks}"))
        for stem, path in sorted(found.files.items()) if found is not None else ():
            if stem not in pairs:
                problems.append(Problem(stem, f"{path}: mask without an image pair"))
    notes = (index_folder(layout.annotation_dir, (layout.annotation_suffix,), ignore={"classes"})
             if layout.annotation_dir else None)
    problems += [Problem(stem, message) for stem, message in notes.problems()] if notes else []
    troubled = {p.stem for p in problems}
    for stem, path in sorted(notes.files.items()) if notes else ():
        if stem not in pairs and stem not in troubled:
            problems.append(Problem(stem, f"{path}: annotation without an image pair"))
    sources = [Source(stem, ir, vi, notes.files.get(stem) if notes else None, split, masks.get(stem))
               for stem, (ir, vi, split) in sorted(pairs.items())]
    return sources, problems
