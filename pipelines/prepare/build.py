"""``prepare_benchmark``: raw dataset folder -> validated, split, labelled benchmark folder.

Steps: find the files (:mod:`.layouts`), decode every image and read every annotation, collecting
all problems (:mod:`.images`, :mod:`.annotations`); stop with the full list, or leave the broken
pairs out with ``skip_bad``; split (:mod:`.split`); write (:mod:`.writers`).
"""
from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from fusion.io import ImageError
from pipelines.benchmark import SPLITS, Benchmark
from pipelines.config import benchmark_dir, get_value
from pipelines.prepare.annotations import AnnotationError, Cleaned, read_boxes
from pipelines.prepare.images import PairImages, inspect_pair
from pipelines.prepare.layouts import Layout, Source, collect_sources, open_layout
from pipelines.prepare.problems import PrepareError, Problem, summarise
from pipelines.prepare.split import (STRATEGIES, check_not_empty, group_scenes, leakage, random_split,
                                     scene_split)
from pipelines.prepare.writers import coco_dataset, write_json, write_split_list, write_yolo_labels, yolo_text

log = logging.getLogger("pipelines.prepare")

SCENE_THRESHOLD = 0.03   # mean absolute thumbnail difference below which two frames are near-duplicates
WARNINGS_LOGGED = 20


@dataclass(frozen=True)
class _Checked:
    source: Source
    images: PairImages
    labels: Cleaned


def prepare_benchmark(raw: Path, out: Path, layout: str = "auto", ratios: tuple[float, ...] = (0.7, 0.1, 0.2),
                      seed: int = 0, split_by: str = "random", skip_bad: bool = False,
                      labels: str | None = None, scene_threshold: float = SCENE_THRESHOLD) -> Benchmark:
    """Validate ``raw``, split it and write the benchmark folder ``out`` (sources are referenced, not
    copied). Raises :class:`PrepareError` listing every problem unless ``skip_bad``."""
    raw, out = Path(raw).resolve(), Path(out).resolve()
    if split_by not in STRATEGIES:
        raise PrepareError(f"unknown split strategy {split_by!r}; expected one of {STRATEGIES}")
    ratios = tuple(float(r) for r in ratios)
    found = open_layout(raw, layout, labels)
    sources, problems = collect_sources(found)
    log.info("%s: %s layout, %d stems, classes %s", raw, found.name, len(sources), list(found.classes))
    checked = _check_all(sources, found, problems)

    bad = sorted({p.stem for p in problems})
    if problems and not skip_bad:
        raise PrepareError(f"{raw}: {summarise(problems)}\nFix these files, or rerun with --skip-bad "
                           f"to leave the {len(bad)} pair(s) out (they are listed in the manifest).")
    if bad:
        log.warning("skipping %d pair(s):\n%s", len(bad), summarise(problems))
    kept = [c for c in checked if c.source.stem not in set(bad)]
    if not kept:
        raise PrepareError(f"{raw}: no usable image pairs")
    warnings = [w for c in kept for w in c.labels.warnings]
    for message in warnings[:WARNINGS_LOGGED]:
        log.warning(message)
    if len(warnings) > WARNINGS_LOGGED:
        log.warning("... %d more box warnings (all listed in the manifest)", len(warnings) - WARNINGS_LOGGED)

    stems = [c.source.stem for c in kept]
    thumbnails = np.stack([c.images.thumbnail for c in kept])
    scenes = group_scenes(thumbnails, scene_threshold)
    splits = {"random": random_split(stems, ratios, seed), "scene": scene_split(stems, scenes, ratios, seed)}
    assignment = splits[split_by]
    check_not_empty(assignment, ratios, split_by)
    leaks = {name: {"test": sum(s == "test" for s in a.values()),
                    "near_duplicates_in_train": leakage(a, stems, thumbnails, scene_threshold)}
             for name, a in splits.items()}
    log.info("test images with a near-duplicate in train: random %d/%d, scene %d/%d (%s split used)",
             leaks["random"]["near_duplicates_in_train"], leaks["random"]["test"],
             leaks["scene"]["near_duplicates_in_train"], leaks["scene"]["test"], split_by)

    classes = list(found.classes)
    by_split = {split: [c for c in kept if assignment[c.source.stem] == split] for split in SPLITS}
    for split, members in by_split.items():
        write_split_list(out, split, [c.source.stem for c in members])
        write_yolo_labels(out / "labels" / split, {
            c.source.stem: yolo_text(c.labels.boxes, c.images.width, c.images.height) for c in members})
        write_json(out / "coco" / f"{split}.json", coco_dataset(
            [(c.source.stem, c.images.width, c.images.height, c.labels.boxes) for c in members], classes))
    write_json(out / "manifest.json", {
        "tool": {"name": "fusionbench", "version": _tool_version()},
        "source": {"path": str(raw), "layout": found.name, "annotations": str(found.annotation_dir)},
        "classes": classes,
        "split": {"strategy": split_by, "seed": seed, "ratios": list(ratios),
                  "scene_threshold": scene_threshold, "scenes": len(set(scenes))},
        "counts": {split: _counts(members, classes) for split, members in by_split.items()},
        "leakage": {"threshold": scene_threshold, "chosen": split_by, **leaks},
        "fixes": {"clipped_boxes": sum(c.labels.clipped for c in kept),
                  "dropped_boxes": sum(c.labels.dropped for c in kept)},
        "warnings": warnings,
        "skipped": [{"stem": stem, "problems": sorted(p.message for p in problems if p.stem == stem)}
                    for stem in bad],
        "pairs": [_pair_entry(c, assignment[c.source.stem], scene) for c, scene in zip(kept, scenes)],
    })
    log.info("benchmark written to %s: %s", out,
             ", ".join(f"{s} {len(by_split[s])}" for s in SPLITS))
    return Benchmark(out)


def prepare_from_config(config: dict) -> Benchmark:
    """``prepare_benchmark`` with the config's ``data`` section; no ``data.raw`` means the synthetic
    sample of the ``sample`` section, generated into ``<run dir>/sample_raw`` when missing."""
    from pipelines.sample import sample_from_config

    raw = get_value(config, "data.raw")
    if not raw:
        raw = sample_from_config(config)
        log.info("no data.raw configured: using the synthetic sample in %s", raw)
    return prepare_benchmark(
        Path(raw), benchmark_dir(config), layout=get_value(config, "data.layout", "auto"),
        ratios=tuple(get_value(config, "data.split.ratios", (0.7, 0.1, 0.2))),
        seed=int(get_value(config, "data.split.seed", 0)), split_by=get_value(config, "data.split.by", "random"),
        skip_bad=bool(get_value(config, "data.skip_bad", False)), labels=get_value(config, "data.labels"),
        scene_threshold=float(get_value(config, "data.split.scene_threshold", SCENE_THRESHOLD)))


def _check_all(sources: list[Source], layout: Layout, problems: list[Problem]) -> list[_Checked]:
    """Decode and read every complete pair (in threads: OpenCV releases the GIL); problems are
    appended in stem order so the report does not depend on scheduling."""
    complete = [s for s in sources if s.ir is not None and s.vi is not None]
    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(lambda s: _check(s, layout), complete))
    checked = []
    for result in results:
        if isinstance(result, Problem):
            problems.append(result)
        else:
            checked.append(result)
    return checked


def _check(source: Source, layout: Layout) -> _Checked | Problem:
    try:
        images = inspect_pair(source.ir, source.vi)
        labels = read_boxes(source.annotation, layout.classes, images.width, images.height)
    except (ImageError, AnnotationError) as error:
        return Problem(source.stem, str(error))
    return _Checked(source, images, labels)


def _counts(members: list[_Checked], classes: list[str]) -> dict:
    per_class = {name: 0 for name in classes}
    for c in members:
        for box in c.labels.boxes:
            per_class[classes[box.cls]] += 1
    return {"pairs": len(members), "background": sum(not c.labels.boxes for c in members),
            "boxes": per_class}


def _pair_entry(c: _Checked, split: str, scene: int) -> dict:
    return {"stem": c.source.stem, "ir": str(c.source.ir.resolve()), "vi": str(c.source.vi.resolve()),
            "width": c.images.width, "height": c.images.height, "split": split,
            "ir_sha256": c.images.ir_sha256, "vi_sha256": c.images.vi_sha256,
            "annotation": str(c.source.annotation.resolve()) if c.source.annotation else None,
            "boxes": len(c.labels.boxes), "scene": scene}


def _tool_version() -> str:
    try:
        return version("fusionbench")
    except PackageNotFoundError:
        return "unknown"
