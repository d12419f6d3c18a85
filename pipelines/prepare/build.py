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
from typing import Sequence

import numpy as np
from tqdm import tqdm

from fusion.provenance import package_versions
from fusionbench.benchmark import SPLITS, Benchmark, manifest_path, record_split_lists
from fusionbench.files import write_text_if_changed
from fusionbench.images import ImageError
from pipelines.config import run_layout
from pipelines.prepare.annotations import AnnotationError, Cleaned, read_boxes
from pipelines.prepare.images import PairImages, inspect_pair
from pipelines.prepare.layouts import Layout, Source, collect_sources, open_layout
from pipelines.prepare.problems import PrepareError, Problem, summarise
from pipelines.prepare.split import STRATEGIES, check_not_empty, group_scenes, leakage, random_split, scene_split
from pipelines.prepare.split_files import SplitFiles, assign, carve_val, read_split_files
from pipelines.prepare.writers import coco_dataset, write_json, write_split_list, write_yolo_labels, yolo_text
from pipelines.schema import Config
from segmentation.masks import MaskError, dataset_palette, read_mask, write_index_png

log = logging.getLogger("pipelines.prepare")

SCENE_THRESHOLD = 0.03   # mean absolute thumbnail difference below which two frames are near-duplicates
WARNINGS_LOGGED = 20
PROBLEMS_FILE = "problems.txt"   # written into the output folder when prepare stops on problems


@dataclass(frozen=True)
class _Checked:
    source: Source
    images: PairImages
    labels: Cleaned
    mask_pixels: tuple[int, ...] = ()   # pixels per segmentation class (ignore left out); () without masks


def prepare_benchmark(raw: Path, out: Path, layout: str = "auto", ratios: tuple[float, ...] = (0.7, 0.1, 0.2),
                      seed: int = 0, split_by: str = "auto", skip_bad: bool = False,
                      labels: str | None = None, scene_threshold: float = SCENE_THRESHOLD,
                      split_files: Sequence[str | Path] = (), unlisted: str | None = None) -> Benchmark:
    """Validate ``raw``, split it and write the benchmark folder ``out`` (sources are referenced, not
    copied). Raises :class:`PrepareError` listing every problem unless ``skip_bad``.

    ``split_by``: ``random``, ``scene``, ``file`` (the published lists ``split_files``, see
    :mod:`.split_files`; pairs in no list go to the split ``unlisted``, or are refused when it is
    None), ``official`` (the layout's own split, LLVIP) or ``auto`` (``file`` when split files are
    given, else ``official`` when the layout has one, else ``random``)."""
    raw, out = Path(raw).resolve(), Path(out).resolve()
    if out == raw or raw in out.parents:
        where = "the raw folder itself" if out == raw else f"inside the raw folder {raw}"
        raise PrepareError(f"output folder {out}: {where}; its labels and lists would mix with (and replace) the "
                           "dataset's own files: choose a folder outside it (--out, data.benchmark)")
    if split_by not in STRATEGIES:
        raise PrepareError(f"unknown split strategy {split_by!r}; expected one of {STRATEGIES}")
    if unlisted is not None and unlisted not in SPLITS:
        raise PrepareError(f"split for unlisted pairs {unlisted!r}: expected one of {SPLITS} (or none: refuse them)")
    ratios = tuple(float(r) for r in ratios)
    found = open_layout(raw, layout, labels)
    strategy = _strategy(split_by, found, split_files)
    published = read_split_files(split_files) if strategy == "file" else None
    kept, problems = _validate(found, out, skip_bad)
    imported = _imported(strategy, kept, problems, published, unlisted)
    split = _split(kept, ratios, seed, strategy, scene_threshold, imported)
    _write(out, found, kept, problems, split)
    log.info("benchmark written to %s: %s", out, ", ".join(f"{s} {len(split.members(kept, s))}" for s in SPLITS))
    return Benchmark(out)


def _strategy(split_by: str, found: Layout, split_files: Sequence[str | Path]) -> str:
    if split_by == "auto":
        return "file" if split_files else "official" if found.has_official_split else "random"
    if split_by == "file" and not split_files:
        raise PrepareError("split strategy 'file' needs split files (--split-file PATH, data.split.files)")
    if split_files and split_by != "file":
        raise PrepareError(f"split files {[str(p) for p in split_files]} given with the split strategy {split_by!r}; "
                           f"use strategy 'file' (or 'auto') to split by them, or give no split files")
    if split_by == "official" and not found.has_official_split:
        raise PrepareError(f"{found.root}: the {found.name} layout has no official split; "
                           f"choose random, scene or file")
    return split_by


@dataclass(frozen=True)
class _Imported:
    """A split given from outside (published lists, or the layout's official split)."""
    assignment: dict[str, str]   # before val is carved from train
    record: dict                 # what the manifest says about where it came from


def _imported(strategy: str, kept: list[_Checked], problems: list[Problem], published: SplitFiles | None,
              unlisted: str | None) -> _Imported | None:
    stems = [c.source.stem for c in kept]
    if strategy == "file":
        matched = assign(published, stems, {p.stem for p in problems}, unlisted)
        return _Imported(matched.assignment, {
            "files": published.files, "unlisted": {"split": unlisted, "pairs": matched.unlisted},
            "listed_but_skipped": matched.listed_but_skipped})
    if strategy == "official":
        return _Imported({c.source.stem: c.source.official_split for c in kept}, {})
    return None


@dataclass(frozen=True)
class _Split:
    strategy: str
    seed: int
    ratios: tuple[float, ...]
    threshold: float
    assignment: dict[str, str]   # stem -> split
    scenes: list[int]            # scene id of each kept pair
    leakage: dict[str, dict]     # strategy -> test size and test images with a near-duplicate in train
    origin: dict                 # imported splits: files, val carved from train, unlisted pairs

    def members(self, kept: list[_Checked], split: str) -> list[_Checked]:
        return [c for c in kept if self.assignment[c.source.stem] == split]


def _validate(found: Layout, out: Path, skip_bad: bool) -> tuple[list[_Checked], list[Problem]]:
    """Every pair checked; stop on problems (full list in ``out/problems.txt``) unless ``skip_bad``."""
    sources, problems = collect_sources(found)
    log.info("%s: %s layout, %d pairs, classes %s", found.root, found.name, len(sources), list(found.classes))
    checked = _check_all(sources, found, problems, out)
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


def _split(kept: list[_Checked], ratios: tuple[float, ...], seed: int, strategy: str, threshold: float,
           imported: _Imported | None) -> _Split:
    """The split asked for, and the near-duplicate leakage of it and of the random and scene splits."""
    stems = [c.source.stem for c in kept]
    thumbnails = np.stack([c.images.thumbnail for c in kept])
    scenes = group_scenes(thumbnails, threshold)
    candidates = {"random": random_split(stems, ratios, seed), "scene": scene_split(stems, scenes, ratios, seed)}
    origin = {}
    if imported is not None:
        assignment, carved = carve_val(imported.assignment, ratios, seed)
        candidates[strategy] = assignment
        origin = {**imported.record, "val_from_train": {
            "pairs": carved, "fraction": ratios[1] / (ratios[0] + ratios[1]), "seed": seed} if carved else None}
        if carved:
            log.info("no val split given: %d train pairs moved to val (ratio %.3g of train, seed %d)",
                     carved, origin["val_from_train"]["fraction"], seed)
    check_not_empty(candidates[strategy], ratios, strategy)
    leaks = {name: {"test": sum(s == "test" for s in a.values()),
                    "near_duplicates_in_train": leakage(a, stems, thumbnails, threshold)}
             for name, a in candidates.items()}
    log.info("test images with a near-duplicate in train: %s (%s split used)", ", ".join(
        f"{n} {v['near_duplicates_in_train']}/{v['test']}" for n, v in leaks.items()), strategy)
    return _Split(strategy, seed, ratios, threshold, candidates[strategy], scenes, leaks, origin)


def _write(out: Path, found: Layout, kept: list[_Checked], problems: list[Problem], split: _Split) -> None:
    """The manifest is removed first and written last: a folder with a manifest is complete, and an
    interrupted prepare leaves none (so no stage trusts new lists beside an old manifest). Between:
    split lists, YOLO labels and COCO per split."""
    manifest_path(out).unlink(missing_ok=True)
    classes = list(found.classes)
    mask_classes = list(found.masks.classes) if found.masks else []
    stems = {c.source.stem for c in kept} | {p.stem for p in problems}
    for stem in sorted(stems - {c.source.stem for c in kept}):  # only files prepare writes: masks of left-out pairs
        Benchmark.mask_file(out, stem).unlink(missing_ok=True)
    for name in SPLITS:
        members = split.members(kept, name)
        write_split_list(out, name, [c.source.stem for c in members])
        write_yolo_labels(out / "labels" / name, {
            c.source.stem: yolo_text(c.labels.boxes, c.images.width, c.images.height) for c in members}, stems)
        write_json(out / "coco" / f"{name}.json", coco_dataset(
            [(c.source.stem, c.images.width, c.images.height, c.labels.boxes) for c in members], classes))
    bad = sorted({p.stem for p in problems})
    write_json(manifest_path(out), {
        "tool": {"name": "fusionbench",
                 "version": package_versions(["fusionbench"], missing="unknown")["fusionbench"]},
        "source": {"path": str(found.root), "layout": found.name,
                   "annotations": str(found.annotation_dir) if found.annotation_dir else None},
        "classes": classes,
        "labels": list(found.label_kinds),
        "segmentation": ({"classes": mask_classes, "ignore": found.masks.ignore,
                          "palette": [list(c) for c in dataset_palette(mask_classes)]} if found.masks else None),
        "split": {"strategy": split.strategy, "seed": split.seed, "ratios": list(split.ratios),
                  "scene_threshold": split.threshold, "scenes": len(set(split.scenes)), **split.origin},
        "split_lists": record_split_lists(out),
        "counts": {name: _counts(split.members(kept, name), classes, mask_classes) for name in SPLITS},
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
        Path(str(raw)), run_layout(config).benchmark, layout=config.data.layout, ratios=config.data.split.ratios,
        seed=config.data.split.seed, split_by=config.data.split.by, skip_bad=config.data.skip_bad,
        labels=config.data.labels, scene_threshold=config.data.split.scene_threshold,
        split_files=config.data.split.files, unlisted=config.data.split.unlisted)


def _check_all(sources: list[Source], layout: Layout, problems: list[Problem], out: Path) -> list[_Checked]:
    """Decode and read every pair (in threads: OpenCV releases the GIL); problems are appended in
    stem order so the report does not depend on scheduling. Masks are written to the benchmark as
    class-index PNGs as they are checked (the manifest, written last, makes them count)."""
    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:
        results = list(tqdm(pool.map(lambda s: _check(s, layout, out), sources), total=len(sources),
                            desc="checking pairs", unit="pair", disable=None, leave=False))
    checked = []
    for result in results:
        if isinstance(result, Problem):
            problems.append(result)
        else:
            checked.append(result)
    return checked


def _check(source: Source, layout: Layout, out: Path) -> _Checked | Problem:
    try:
        images = inspect_pair(source.ir, source.vi)
        labels = read_boxes(source.annotation, layout.classes, images.width, images.height, layout.aliases)
        pixels = _check_mask(source, layout, images, out) if layout.masks else ()
    except (ImageError, AnnotationError, MaskError) as error:
        return Problem(source.stem, str(error))
    if source.annotation is None and layout.annotation_dir is not None:
        labels.warnings.append(f"{source.ir}: no annotation file in {layout.annotation_dir}; "
                               f"kept as a background image")
    return _Checked(source, images, labels, pixels)


def _check_mask(source: Source, layout: Layout, images: PairImages, out: Path) -> tuple[int, ...]:
    """Read the pair's mask as class indices (checked against its image's size and the classes), write it
    as the benchmark's index PNG, and count its pixels per class."""
    masks = layout.masks
    if source.mask is None:
        raise MaskError(f"{source.ir}: no mask for this pair")
    indices = read_mask(source.mask, len(masks.classes), masks.ignore, (images.height, images.width), masks.palette)
    write_index_png(Benchmark.mask_file(out, source.stem), indices, dataset_palette(masks.classes))
    counts = np.bincount(indices.ravel(), minlength=256)
    return tuple(int(n) for n in counts[:len(masks.classes)])


def _counts(members: list[_Checked], classes: list[str], mask_classes: list[str]) -> dict:
    per_class = {name: 0 for name in classes}
    for c in members:
        for box in c.labels.boxes:
            per_class[classes[box.cls]] += 1
    counts = {"pairs": len(members), "background": sum(not c.labels.boxes for c in members), "boxes": per_class}
    if mask_classes:
        totals = np.sum([c.mask_pixels for c in members], axis=0) if members else np.zeros(len(mask_classes), int)
        counts["mask_pixels"] = {name: int(n) for name, n in zip(mask_classes, totals)}
    return counts


def _pair_entry(c: _Checked, split: str, scene: int) -> dict:
    return {"stem": c.source.stem, "ir": str(c.source.ir.resolve()), "vi": str(c.source.vi.resolve()),
            "width": c.images.width, "height": c.images.height, "split": split,
            "ir_sha256": c.images.ir_sha256, "vi_sha256": c.images.vi_sha256,
            "annotation": str(c.source.annotation.resolve()) if c.source.annotation else None,
            "mask": str(c.source.mask.resolve()) if c.source.mask else None,
            "boxes": len(c.labels.boxes), "scene": scene}
