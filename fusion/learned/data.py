"""Training data for learned fusers: random crops of registered IR / visible-luminance pairs.

Every random choice (crop position, flips) comes from a generator seeded by (seed, epoch, index),
and the order of an epoch from the sampler's (seed, epoch): an epoch is the same whatever the number
of workers, and a run resumed at an epoch boundary sees exactly the data it would have seen.
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from fusion.color import luminance
from fusionbench.errors import FusionBenchError
from fusionbench.images import IMAGE_SUFFIXES, ImageError, read_ir, read_vi

log = logging.getLogger(__name__)


class TrainingDataError(FusionBenchError, ValueError):
    """Extra training folders or data options that cannot be used."""

IR_FOLDERS = ("ir", "Ir", "IR", "infrared", "Infrared", "Inf")
VI_FOLDERS = ("vi", "Vi", "VI", "Vis", "vis", "visible", "Visible")


@dataclass(frozen=True)
class TrainPair:
    """One registered pair; ``name`` is unique across sources ("<source>/<stem>")."""

    name: str
    ir: Path
    vi: Path
    width: int
    height: int


def folder_pairs(path: str | Path, ir: str | None = None, vi: str | None = None) -> list[TrainPair]:
    """Pairs of a fusion-only folder (e.g. MSRS train, RoadScene): ``<path>/<ir>/x.png`` with
    ``<path>/<vi>/x.*`` matched by stem; sub-folder names found among common spellings when not given."""
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise TrainingDataError(f"{root}: extra training folder not found")
    ir_dir, vi_dir = (_subfolder(root, given, names) for given, names in ((ir, IR_FOLDERS), (vi, VI_FOLDERS)))
    visible = {p.stem: p for p in sorted(vi_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    pairs = []
    for ir_path in sorted(ir_dir.iterdir()):
        if ir_path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if ir_path.stem not in visible:
            raise ImageError(f"{ir_path}: no visible image with the same name in {vi_dir}")
        width, height = _size(ir_path)
        pairs.append(TrainPair(f"{root.name}/{ir_path.stem}", ir_path, visible[ir_path.stem], width, height))
    if not pairs:
        raise ImageError(f"{ir_dir}: no images")
    return pairs


def _subfolder(root: Path, given: str | None, candidates: Sequence[str]) -> Path:
    for name in [given] if given else candidates:
        if (root / name).is_dir():
            return root / name
    raise TrainingDataError(f"{root}: no sub-folder named {given or ' / '.join(candidates)}")


def _size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as image:  # header only
            return image.size
    except OSError as error:
        raise ImageError(f"{path}: not a readable image ({error})") from error


def take_fraction(pairs: Sequence[TrainPair], fraction: float, seed: int) -> list[TrainPair]:
    """A fixed-seed random subset of ``round(fraction * n)`` pairs, in name order."""
    if not 0 < fraction <= 1:
        raise TrainingDataError(f"extra-folder fraction must be in (0, 1], got {fraction}")
    names = sorted(p.name for p in pairs)
    random.Random(seed).shuffle(names)
    keep = set(names[: round(fraction * len(names))])
    return [p for p in pairs if p.name in keep]


def training_pairs(train: Iterable[TrainPair], extra: Iterable[TrainPair], forbidden: Iterable[Path]) -> list[TrainPair]:
    """The benchmark's TRAIN pairs plus extra pairs; an extra pair that uses a benchmark file (a
    val/test image, or a duplicate of a train one) is dropped and counted, so no evaluation image
    is ever trained on."""
    pairs = list(train)
    taken = {p.resolve() for p in forbidden} | {p.ir.resolve() for p in pairs} | {p.vi.resolve() for p in pairs}
    dropped = 0
    for pair in extra:
        if pair.ir.resolve() in taken or pair.vi.resolve() in taken:
            dropped += 1
        else:
            pairs.append(pair)
    if dropped:
        log.warning("dropped %d extra training pair(s) that are benchmark images (val/test or duplicates)", dropped)
    return pairs


def fit_crop(pairs: Sequence[TrainPair], crop: int, small: str = "pad") -> tuple[list[TrainPair], int]:
    """Pairs usable with ``crop`` and how many are smaller than it: kept (reflect-padded when
    loaded) with ``small="pad"``, left out with ``small="skip"``."""
    if small not in ("pad", "skip"):
        raise TrainingDataError(f"small images: expected 'pad' or 'skip', got {small!r}")
    too_small = [p for p in pairs if min(p.width, p.height) < crop]
    if too_small:
        log.info("%d training pair(s) smaller than the %dx%d crop: %s", len(too_small), crop, crop,
                 "reflect-padded" if small == "pad" else "skipped")
    kept = list(pairs) if small == "pad" else [p for p in pairs if min(p.width, p.height) >= crop]
    return kept, len(too_small)


def load_pair(pair: TrainPair) -> tuple[np.ndarray, np.ndarray]:
    """(IR, visible luminance), both (H, W) float32 in [0, 1]; the sizes must agree."""
    ir, vi = read_ir(pair.ir), luminance(read_vi(pair.vi))
    if ir.shape != vi.shape:
        raise ImageError(f"{pair.ir}: infrared is {ir.shape[1]}x{ir.shape[0]} but {pair.vi} is {vi.shape[1]}x{vi.shape[0]}")
    return ir, vi


class CropPairs(Dataset):
    """(ir, vi) crops of side ``crop`` as (1, crop, crop) tensors: a random position (and random
    flips when ``flips``) when ``augment``, the centre otherwise (validation). Smaller images are
    reflect-padded."""

    def __init__(self, pairs: Sequence[TrainPair], crop: int, seed: int = 0, augment: bool = True, flips: bool = True):
        self.pairs, self.crop, self.seed, self.augment, self.flips = list(pairs), crop, seed, augment, flips
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        stack = np.stack(load_pair(self.pairs[index]))  # (2, H, W)
        pad_h, pad_w = max(0, self.crop - stack.shape[1]), max(0, self.crop - stack.shape[2])
        if pad_h or pad_w:
            stack = np.pad(stack, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2)),
                           mode="reflect")
        height, width = stack.shape[1:]
        if self.augment:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            top, left = int(rng.integers(0, height - self.crop + 1)), int(rng.integers(0, width - self.crop + 1))
            flip_h, flip_v = rng.random(2) < 0.5  # drawn either way: the crops do not depend on ``flips``
            flip_h, flip_v = flip_h and self.flips, flip_v and self.flips
        else:
            top, left, flip_h, flip_v = (height - self.crop) // 2, (width - self.crop) // 2, False, False
        patch = stack[:, top : top + self.crop, left : left + self.crop]
        if flip_h:
            patch = patch[:, :, ::-1]
        if flip_v:
            patch = patch[:, ::-1, :]
        patch = torch.from_numpy(np.ascontiguousarray(patch)).unsqueeze(1)  # (2, 1, crop, crop)
        return patch[0], patch[1]


def make_loader(dataset: CropPairs, batch_size: int, workers: int, seed: int, shuffle: bool = True,
                rank: int = 0, world: int = 1) -> DataLoader:
    """A loader whose order depends only on (seed, epoch): call ``loader.sampler.set_epoch`` and
    ``dataset.set_epoch`` before each epoch. Under DDP each rank gets its share of the same order."""
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=shuffle, seed=seed)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      pin_memory=torch.cuda.is_available(),
                      persistent_workers=False)  # workers start each epoch with the dataset's new epoch
