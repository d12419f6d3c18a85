"""The prepared benchmark folder: the contract between ``prepare`` and every later stage.

Layout (written by ``pipelines prepare``; sources are referenced, never copied)::

    <bench>/manifest.json                 classes, pairs (stem, ir, vi, width, height, split, hashes),
                                          seed, strategy, counts, per-class box counts, skipped pairs,
                                          and each split list's pair count and sha256 (``split_lists``)
    <bench>/splits/{train,val,test}.txt   one stem per line, sorted
    <bench>/labels/{split}/<stem>.txt     YOLO labels (cls cx cy w h, normalised; empty = background)
    <bench>/coco/{split}.json             COCO ground truth: image id = 1-based position in the split
                                          list, file_name = "<stem>.png", category id = class index + 1
    <bench>/masks/<stem>.png              segmentation labels (class-index palette PNGs), when the dataset
                                          has them (manifest: ``labels``, ``segmentation``)
    <bench>/fused/<method>/images/{split}/<stem>.png   a fused set (``pipelines fuse``)
    <bench>/fused/<method>/labels -> ../../labels      so ultralytics finds the shared labels
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from fusionbench.errors import FusionBenchError
from fusionbench.files import atomic_write_text
from fusionbench.layout import MANIFEST

SPLITS = ("train", "val", "test")
M3FD_CLASSES = ("People", "Car", "Bus", "Motorcycle", "Lamp", "Truck")
CHECKSUMS = "SHA256SUMS"  # beside exported split lists, in `sha256sum -c` format


def manifest_path(root: Path) -> Path:
    return Path(root) / MANIFEST


def split_list_path(root: Path, split: str) -> Path:
    return Path(root) / "splits" / f"{split}.txt"


def split_list_record(data: bytes) -> dict:
    """What the manifest records of one split list (``split_lists.<split>``): its pair count and sha256."""
    return {"pairs": sum(1 for line in data.decode("utf-8").splitlines() if line),
            "sha256": hashlib.sha256(data).hexdigest()}


def record_split_lists(root: Path) -> dict:
    """``split_lists`` for the manifest, from the lists now in ``root/splits`` (written before it)."""
    return {split: split_list_record(split_list_path(root, split).read_bytes()) for split in SPLITS}


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
    """Read-only view of a prepared benchmark folder.

    ``prepare`` deletes the manifest first and writes it last, so a folder with a manifest is
    complete; every split list is checked against the count and sha256 the manifest records, so
    an edited or half-rewritten list is an error naming the file, at every stage that reads it."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        manifest = manifest_path(self.root)
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
        """The stems of ``split``, after checking its list against the manifest."""
        if split not in SPLITS:
            raise BenchmarkError(f"unknown split {split!r}; expected one of {SPLITS}")
        path = split_list_path(self.root, split)
        if not path.is_file():
            raise BenchmarkError(f"{path}: split list missing (rerun `pipelines prepare`)")
        recorded = self.manifest.get("split_lists", {}).get(split)
        if recorded is None:
            raise BenchmarkError(f"{manifest_path(self.root)}: records no pair count and sha256 for {path.name} "
                                 f"(prepared by an older version); rerun `pipelines prepare`")
        data = path.read_bytes()
        actual = split_list_record(data)
        if actual != recorded:
            raise BenchmarkError(f"{path}: {actual['pairs']} pair(s), sha256 {actual['sha256'][:12]}..., but the manifest records "
                                 f"{recorded['pairs']} pair(s), sha256 {recorded['sha256'][:12]}...: the list was edited "
                                 f"or left by an interrupted prepare; rerun `pipelines prepare` (to use another split, "
                                 f"give it with --split-file)")
        return [line for line in data.decode("utf-8").splitlines() if line]

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

    @property
    def label_kinds(self) -> tuple[str, ...]:
        """What downstream tasks can learn here: ``boxes`` (detection), ``masks`` (segmentation); a benchmark
        prepared before masks existed has boxes."""
        return tuple(self.manifest.get("labels", ["boxes"]))

    @property
    def segmentation(self) -> dict | None:
        """``{classes, ignore, palette}`` of the masks, or None for a benchmark without masks."""
        return self.manifest.get("segmentation")

    @staticmethod
    def masks_folder(root: Path) -> Path:
        return Path(root) / "masks"

    @staticmethod
    def mask_file(root: Path, stem: str) -> Path:
        """``<bench>/masks/<stem>.png``: the pair's class-index mask (a palette PNG), as prepare wrote it."""
        return Benchmark.masks_folder(root) / f"{stem}.png"

    def mask_path(self, stem: str) -> Path:
        return self.mask_file(self.root, stem)

    def fused_dir(self, method: str) -> Path:
        return self.root / "fused" / method

    def fused_image(self, method: str, split: str, stem: str) -> Path:
        return self.fused_dir(method) / "images" / split / f"{stem}.png"


def export_split(bench: "Benchmark", out: str | Path) -> list[Path]:
    """Write ``train.txt``, ``val.txt``, ``test.txt`` (one stem per line, as prepared) and
    ``SHA256SUMS`` (``sha256sum -c`` format) into ``out``; the lists are verified against the
    benchmark's manifest first."""
    out = Path(out)
    written = []
    sums = []
    for split in SPLITS:
        text = "".join(f"{stem}\n" for stem in bench.stems(split))
        path = out / f"{split}.txt"
        atomic_write_text(path, text)
        sums.append(f"{hashlib.sha256(text.encode()).hexdigest()}  {path.name}\n")
        written.append(path)
    atomic_write_text(out / CHECKSUMS, "".join(sums))
    return [*written, out / CHECKSUMS]
