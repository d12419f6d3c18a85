"""Where a raw dataset keeps its files: the M3FD layout and the generic (MSRS-style) layout.

M3FD:     ``Ir/``, ``Vis/``, ``Annotation/*.xml`` (or ``Annotations/``; Pascal VOC boxes, class names); the classes are
          :data:`pipelines.benchmark.M3FD_CLASSES` in that fixed order, never the order of appearance.
Generic:  ``ir/``, ``vi/``, ``labels/*.txt`` (YOLO) and ``classes.txt`` (in ``labels/`` or the root;
          one name per line, optionally ``<index> <name>``). When ``labels/`` holds variants in
          sub-folders, as the MSRS detection labels do (``infrared/``, ``visible/``, ``fusion/``),
          ``fusion/`` is used unless another one is named.

Folder names and image suffixes are matched case-insensitively. This module only finds files and
pairs them by stem; reading them is :mod:`pipelines.prepare.images` and
:mod:`pipelines.prepare.annotations`.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from fusionbench.images import IMAGE_SUFFIXES
from pipelines.benchmark import M3FD_CLASSES
from pipelines.prepare.problems import PrepareError, Problem

LAYOUTS = ("auto", "m3fd", "generic")
DEFAULT_LABEL_VARIANT = "fusion"
M3FD_ANNOTATIONS = ("annotation", "annotations")   # the release says Annotation/; some copies use the plural


@dataclass(frozen=True)
class Layout:
    name: str                 # "m3fd" or "generic"
    root: Path
    ir_dir: Path
    vi_dir: Path
    annotation_dir: Path
    annotation_suffix: str    # ".xml" (VOC) or ".txt" (YOLO)
    classes: tuple[str, ...]


@dataclass(frozen=True)
class Source:
    """The files found for one stem; any of them may be missing (reported as a problem)."""
    stem: str
    ir: Path | None
    vi: Path | None
    annotation: Path | None


def open_layout(root: Path, layout: str = "auto", labels: str | None = None) -> Layout:
    """Recognise the layout of ``root`` (or check the one asked for) and locate its folders."""
    root = Path(root)
    if not root.is_dir():
        raise PrepareError(f"{root}: raw dataset folder not found")
    if layout not in LAYOUTS:
        raise PrepareError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
    if layout == "auto":
        m3fd_only = {"vis", *M3FD_ANNOTATIONS}
        layout = "m3fd" if any(p.is_dir() and p.name.lower() in m3fd_only for p in root.iterdir()) else "generic"
    return _m3fd(root) if layout == "m3fd" else _generic(root, labels)


def _child_dir(parent: Path, *names: str) -> Path | None:
    """The sub-folder of ``parent`` named like one of ``names`` (lower case), in any case."""
    matches = sorted(p for p in parent.iterdir() if p.is_dir() and p.name.lower() in names)
    if len(matches) > 1:
        raise PrepareError(f"{parent}: folders {[m.name for m in matches]} are ambiguous; keep one")
    return matches[0] if matches else None


def _required_dir(parent: Path, layout: str, *names: str) -> Path:
    found = _child_dir(parent, *names)
    if found is None:
        raise PrepareError(f"{parent}: no {' or '.join(n + '/' for n in names)} folder (any case), "
                           f"required by the {layout} layout")
    return found


def _m3fd(root: Path) -> Layout:
    return Layout("m3fd", root, _required_dir(root, "M3FD", "ir"), _required_dir(root, "M3FD", "vis"),
                  _required_dir(root, "M3FD", *M3FD_ANNOTATIONS), ".xml", M3FD_CLASSES)


def _generic(root: Path, variant: str | None) -> Layout:
    labels = _required_dir(root, "generic", "labels")
    annotations = labels
    if variant or not any(p.suffix.lower() == ".txt" and p.stem.lower() != "classes" for p in labels.iterdir()):
        name = variant or DEFAULT_LABEL_VARIANT
        annotations = _child_dir(labels, name.lower())
        if annotations is None:
            raise PrepareError(f"{labels}: no YOLO .txt files and no {name}/ sub-folder "
                               f"(set data.labels to one of the sub-folders)")
    classes_file = next((d / "classes.txt" for d in (annotations, labels, root) if (d / "classes.txt").is_file()), None)
    if classes_file is None:
        raise PrepareError(f"{labels}: classes.txt not found (looked in {annotations}, {labels} and {root})")
    return Layout("generic", root, _required_dir(root, "generic", "ir"), _required_dir(root, "generic", "vi"),
                  annotations, ".txt", read_classes(classes_file))


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


def collect_sources(layout: Layout) -> tuple[list[Source], list[Problem]]:
    """Pair IR, VI and annotation files by stem, sorted by stem; report what does not pair up."""
    problems: list[Problem] = []
    ir = _by_stem(layout.ir_dir, IMAGE_SUFFIXES, problems)
    vi = _by_stem(layout.vi_dir, IMAGE_SUFFIXES, problems)
    notes = _by_stem(layout.annotation_dir, (layout.annotation_suffix,), problems, ignore={"classes"})
    sources = []
    for stem in sorted(set(ir) | set(vi) | set(notes)):
        source = Source(stem, ir.get(stem), vi.get(stem), notes.get(stem))
        if source.ir is None and source.vi is None:
            problems.append(Problem(stem, f"{source.annotation}: annotation without an image pair"))
            continue
        if source.vi is None:
            problems.append(Problem(stem, f"{source.ir}: infrared image without a visible image in {layout.vi_dir}"))
        if source.ir is None:
            problems.append(Problem(stem, f"{source.vi}: visible image without an infrared image in {layout.ir_dir}"))
        sources.append(source)
    return sources, problems


def _by_stem(folder: Path, suffixes: tuple[str, ...], problems: list[Problem],
             ignore: set[str] = frozenset()) -> dict[str, Path]:
    """Files of ``folder`` with one of ``suffixes`` (any case), keyed by stem; a stem seen twice
    (``a.png`` and ``a.jpg``) is a problem, since nothing says which file is meant."""
    found: dict[str, list[Path]] = defaultdict(list)
    for path in folder.iterdir():
        if path.is_file() and path.suffix.lower() in suffixes and path.stem.lower() not in ignore:
            found[path.stem].append(path)
    for stem, paths in found.items():
        if len(paths) > 1:
            names = ", ".join(sorted(p.name for p in paths))
            problems.append(Problem(stem, f"{folder}: duplicate stem {stem!r} ({names})"))
    return {stem: min(paths) for stem, paths in found.items()}
