"""The prepared benchmark folder: the contract between ``prepare`` and every later stage.

Layout (written by ``pipelines prepare``; sources are referenced, never copied)::

    <bench>/manifest.json                 classes, pairs (stem, ir, vi, width, height, split, hashes),
                                          seed, strategy, counts, per-class box counts, skipped pairs
    <bench>/splits/{train,val,test}.txt   one stem per line, sorted
    <bench>/labels/{split}/<stem>.txt     YOLO labels (cls cx cy w h, normalised; empty = background)
    <bench>/coco/{split}.json             COCO ground truth: image id = 1-based position in the split
                                          list, file_name = "<stem>.png", category id = class index + 1
    <bench>/fused/<method>/images/{split}/<stem>.png   a fused set (``pipelines fuse``)
    <bench>/fused/<method>/labels -> ../../labels      so ultralytics finds the shared labels
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from fusionbench.errors import FusionBenchError

SPLITS = ("train", "val", "test")
M3FD_CLASSES = ("People", "Car", "Bus", "Motorcycle", "Lamp", "Truck")


class BenchmarkError(FusionBenchError):
    """A prepared benchmark folder that is missing or inconsistent."""


@dataclass(frozen=True)
class Pair:
    stem: str
    ir: Path
    vi: Path
    split: str
    width: int
    height: int


class Benchmark:
    """Read-only view of a prepared benchmark folder."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        manifest = self.root / "manifest.json"
        if not manifest.is_file():
            raise BenchmarkError(f"{manifest}: no prepared benchmark here (run `pipelines prepare`)")
        try:
            self.manifest = json.loads(manifest.read_text())
        except json.JSONDecodeError as error:
            raise BenchmarkError(f"{manifest}: not valid JSON: {error}") from error

    @property
    def classes(self) -> list[str]:
        return list(self.manifest["classes"])

    @cached_property
    def _pairs(self) -> dict[str, Pair]:
        return {
            p["stem"]: Pair(p["stem"], Path(p["ir"]), Path(p["vi"]), p["split"], int(p["width"]), int(p["height"]))
            for p in self.manifest["pairs"]
        }

    def stems(self, split: str) -> list[str]:
        if split not in SPLITS:
            raise BenchmarkError(f"unknown split {split!r}; expected one of {SPLITS}")
        path = self.root / "splits" / f"{split}.txt"
        if not path.is_file():
            raise BenchmarkError(f"{path}: split list missing")
        return [line for line in path.read_text().splitlines() if line]

    def pair(self, stem: str) -> Pair:
        try:
            return self._pairs[stem]
        except KeyError as error:
            raise BenchmarkError(f"{self.root}: no pair named {stem!r}") from error

    def pairs(self, split: str | None = None) -> list[Pair]:
        splits = SPLITS if split is None else (split,)
        return [self.pair(stem) for s in splits for stem in self.stems(s)]

    def labels_dir(self, split: str) -> Path:
        return self.root / "labels" / split

    def coco_path(self, split: str) -> Path:
        return self.root / "coco" / f"{split}.json"

    def fused_dir(self, method: str) -> Path:
        return self.root / "fused" / method

    def fused_image(self, method: str, split: str, stem: str) -> Path:
        return self.fused_dir(method) / "images" / split / f"{stem}.png"
