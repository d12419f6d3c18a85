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
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fusion.io import ImageError, write_text_if_changed
from fusion.provenance import package_versions
from pipelines.benchmark import SPLITS, Benchmark
from pipelines.config import benchmark_dir
from pipelines.prepare.annotations import AnnotationError, Cleaned, read_boxes
from pipelines.prepare.images import PairImages, inspect_pair
from pipelines.prepare.layouts import Layout, Source, collect_sources, open_layout
from pipelines.prepare.problems import PrepareError, Problem, summarise
from pipelines.prepare.split import (
    STRATEGIES,
    check_not_empty,
    group_scenes,
    leakage,
    random_split,
    scene_split,
)
from pipelines.prepare.writers import (
    coco_dataset,
    write_json,
    write_split_list,
    write_yolo_labels,
    yolo_text,
)
from pipelines.schema import Config

log = logging.getLogger("pipelines.prepare")

SCENE_THRESHOLD = 0.03   # mean absolute thumbnail difference below which two frames are near-duplicates
WARNINGS_LOGGED = 20
PROBLEMS_FILE = "problems.txt"   # written into the output folder when prepare stops on problems


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
    kept, problems = _validate(found, out, skip_bad)
    split = _split(kept, ratios, seed, split_by, scene_threshold)
    _write(out, found, kept, problems, split)
    log.info("benchmark written to %s: %s", out, ", ".join(f"{s} {len(split.members(kept, s))}" for s in SPLITS))
    return Benchmark(out)


@dataclass(frozen=True)
class _Split:
    strategy: str
    seed: int
    ratios: tuple[float, ...]
    threshold: float
    assignment: dict[str, str]   # stem -> split
    scenes: list[int]            # scene id of each kept pair
    leakage: dict[str, dict]     # strategy -> test size and test images with a near-duplicate in train

    def members(self, kept: list[_Checked], split: str) -> list[_Checked]:
        return [c for c in kept if self.assignment[c.source.stem] == split]


def _validate(found: Layout, out: Path, skip_bad: bool) -> tuple[list[_Checked], list[Problem]]:
    """Every pair checked; stop on problems (full list in ``out/problems.txt``) unless ``skip_bad``."""
    sources, problems = collect_sources(found)
    log.info("%s: %s layout, %d stems, classes %s", found.root, found.name, len(sources), list(found.classes))
    checked = _check_all(sources, found, problems)
    listing = out / PROBLEMS_FILE
    bad = {p.stem for p in problems}
    if problems and not skip_bad:
        write_text_if_changed(listing, "".join(f"{p.message}\n" for p in sorted(problems, key=lambda p: (p.stem, p.message))))
        raise PrepareError(f"{found.root}: {summarise(problems)}\n(full list: {listing})\nFix these files, or "
                           f"rerun with --skip-bad to leave the {len(bad)} pair(s) out (listed in the manifest).")
    listing.unlink(missing_ok=True)
    if bad:
        log.warning("skipping %d pair(s):\n%s", len(bad), summarise(problems))
    kept = [c for c in checked if c.source.stem not in bad]
    if not kept:
        raise PrepareError(f"{found.root}: no usable image pairs")
    warnings = [w for c in kept for w in c.labels.warnings]
    for message in warnings[:WARNINGS_LOGGED]:
        log.warning(message)
    if len(warnings) > WARNINGS_LOGGED:
        log.warning("... %d more warnings (all listed in the manifest)", len(warnings) - WARNINGS_LOGGED)
    return kept, problems


def _split(kept: list[_Checked], ratios: tuple[float, ...], seed: int, strategy: str, threshold: float) -> _Split:
    """The split asked for, and the near-duplicate leakage of both strategies for the report."""
    stems = [c.source.stem for c in kept]
    thumbnails = np.stack([c.images.thumbnail for c in kept])
    scenes = group_scenes(thumbnails, threshold)
    candidates = {"random": random_split(stems, ratios, seed), "scene": scene_split(stems, scenes, ratios, seed)}
    check_not_empty(candidates[strategy], ratios, strategy)
    leaks = {name: {"test": sum(s == "test" for s in a.values()),
                    "near_duplicates_in_train": leakage(a, stems, thumbnails, threshold)}
             for name, a in candidates.items()}
    log.info("test images with a near-duplicate in train: %s (%s split used)", ", ".join(
        f"{n} {v['near_duplicates_in_train']}/{v['test']}" for n, v in leaks.items()), strategy)
    return _Split(strategy, seed, ratios, threshold, candidates[strategy], scenes, leaks)


def _write(out: Path, found: Layout, kept: list[_Checked], problems: list[Problem], split: _Split) -> None:
    """Split lists, YOLO labels and COCO per split, then the manifest (last: it marks a complete folder)."""
    classes = list(found.classes)
    for name in SPLITS:
        members = split.members(kept, name)
        write_split_list(out, name, [c.source.stem for c in members])
        write_yolo_labels(out / "labels" / name, {
            c.source.stem: yolo_text(c.labels.boxes, c.images.width, c.images.height) for c in members})
        write_json(out / "coco" / f"{name}.json", coco_dataset(
            [(c.source.stem, c.images.width, c.images.height, c.labels.boxes) for c in members], classes))
    bad = sorted({p.stem for p in problems})
    write_json(out / "manifest.json", {
        "tool": {"name": "fusionbench",
                 "version": package_versions(["fusionbench"], missing="unknown")["fusionbench"]},
        "source": {"path": str(found.root), "layout": found.name, "annotations": str(found.annotation_dir)},
        "classes": classes,
        "split": {"strategy": split.strategy, "seed": split.seed, "ratios": list(split.ratios),
                  "scene_threshold": split.threshold, "scenes": len(set(split.scenes))},
        "counts": {name: _counts(split.members(kept, name), classes) for name in SPLITS},
        "leakage": {"threshold": split.threshold, "chosen": split.strategy, **split.leakage},
        "fixes": {"clipped_boxes": sum(c.labels.clipped for c in kept),
                  "dropped_boxes": sum(c.labels.dropped for c in kept),
                  "missing_annotations": sum(c.source.annotation is None for c in kept)},
        "warnings": [w for c in kept for w in c.labels.warnings],
        "skipped": [{"stem": stem, "problems": sorted(p.message for p in problems if p.stem == stem)}
                    for stem in bad],
        "pairs": [_pair_entry(c, split.assignment[c.source.stem], scene) for c, scene in zip(kept, split.scenes)],
    })


def prepare_from_config(config: Config) -> Benchmark:
    """``prepare_benchmark`` with the config's ``data`` section; no ``data.raw`` means the synthetic
    sample of the ``sample`` section, generated into ``<run dir>/sample_raw`` when missing."""
    from pipelines.sample import sample_from_config

    raw = config.data.raw
    if not raw:
        raw = sample_from_config(config)
        log.info("no data.raw configured: using the synthetic sample in %s", raw)
    return prepare_benchmark(
        Path(str(raw)), benchmark_dir(config), layout=config.data.layout,
        ratios=config.data.split.ratios,
        seed=config.data.split.seed, split_by=config.data.split.by,
        skip_bad=config.data.skip_bad, labels=config.data.labels,
        scene_threshold=config.data.split.scene_threshold)


def _check_all(sources: list[Source], layout: Layout, problems: list[Problem]) -> list[_Checked]:
    """Decode and read every complete pair (in threads: OpenCV releases the GIL); problems are
    appended in stem order so the report does not depend on scheduling."""
    complete = [s for s in sources if s.ir is not None and s.vi is not None]
    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:
        results = list(tqdm(pool.map(lambda s: _check(s, layout), complete), total=len(complete),
                            desc="checking pairs", unit="pair", disable=None, leave=False))
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
    if source.annotation is None:
        labels.warnings.append(f"{source.ir}: no annotation file in {layout.annotation_dir}; "
                               f"kept as a background image")
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
