"""Training one segmenter on one image set: seeded, checkpointed every epoch, resumable exactly.

The protocol follows the field's (``../shared/TASKS.md``: the bubbliiiing SegFormer script): SegFormer-B0
from pre-trained weights, 512x512 inputs, AdamW (lr 1e-4, weight decay 1e-2) with cosine decay to 1% of
the learning rate, pixel-wise cross-entropy (ignore value skipped), random horizontal flips, validation
every ``eval_every`` epochs and at the last; the best epoch by validation mIoU is kept. Differences, kept
for simplicity: images are resized (not letter-boxed), the backbone is never frozen, no other
augmentation.

Reproducible: the network's start, the order and flips of every epoch (from ``seed`` and the epoch
number, so workers change nothing) and drop-path follow the seed; on CPU two runs give the same weights.
``out_dir/last.pt`` (model, optimizer, scheduler, torch RNG state, completed epochs, validation history)
is written atomically after every epoch, so a killed run rerun with the same arguments continues after
the last completed epoch and ends with the weights an uninterrupted run has. ``out_dir/best.pt`` holds
the best epoch's weights with their classes and :class:`~segmentation.inputs.Preprocessing`.
"""
from __future__ import annotations

import dataclasses
import io
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from fusionbench.files import atomic_write_bytes, sha256_file
from segmentation.confusion import confusion
from segmentation.inputs import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Preprocessing,
    channel_statistics,
    image_shape,
    read_input,
    resize_mask,
    to_tensor,
)
from segmentation.masks import read_mask
from segmentation.predict import segment
from segmentation.segformer import build, weights_file
from segmentation.settings import SegmenterError, SegmenterSettings, device_of
from segmentation.statistics import values

log = logging.getLogger(__name__)

Sample = tuple[str | os.PathLike, str | os.PathLike]  # (image file, its class-index mask file)


@dataclass(frozen=True)
class TrainResult:
    """The kept epoch (1-based), validation mIoU per evaluated epoch, and where the weights are."""

    best_epoch: int
    best_miou: float
    val_miou: dict[int, float]
    best_weights: Path
    preprocessing: Preprocessing
    start_weights: str  # the pre-trained file and its sha256, or "random"


def train_segmenter(train: Sequence[Sample], val: Sequence[Sample], classes: Sequence[str],
                    settings: SegmenterSettings, out_dir: str | os.PathLike) -> TrainResult:
    """Train (or finish training) one segmenter; see the module's docstring."""
    out_dir, classes = Path(out_dir), tuple(classes)
    if not train or not val:
        raise SegmenterError(f"{len(train)} training and {len(val)} validation images: both are needed")
    for image, mask in [*train, *val]:  # every mask checked before hours of training, not when first drawn
        read_mask(mask, len(classes), settings.ignore, size=image_shape(image))
    identity = {"settings": settings.deciding(), "classes": list(classes),
                "train": [Path(image).stem for image, _ in train], "val": [Path(image).stem for image, _ in val]}
    device = device_of(settings.device)
    torch.manual_seed(settings.seed)
    model = build(settings.model, len(classes), settings.weights, settings.allow_random).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings.epochs,
                                                           eta_min=settings.lr / 100)
    state = _resume(out_dir / "last.pt", identity, model, optimizer, scheduler)
    if state is None:
        state = {"epoch": 0, "history": {}, "best": (0, -1.0), "preprocessing": _preprocessing(settings, train)}
    preprocessing = Preprocessing(**state["preprocessing"])
    data = _Samples(train, len(classes), settings, preprocessing)
    for epoch in range(state["epoch"], settings.epochs):
        _train_epoch(model, optimizer, data, settings, epoch, device)
        scheduler.step()
        if (epoch + 1) % settings.eval_every == 0 or epoch + 1 == settings.epochs:
            miou = _validate(model, val, classes, settings, preprocessing, device)
            state["history"][epoch + 1] = miou
            log.info("segmenter epoch %d/%d: validation mIoU %.4f", epoch + 1, settings.epochs, miou)
            if miou > state["best"][1]:
                state["best"] = (epoch + 1, miou)
                _save(out_dir / "best.pt", {"model": model.state_dict(), "architecture": settings.model,
                                            "classes": list(classes), "epoch": epoch + 1, "val_miou": miou,
                                            "preprocessing": state["preprocessing"]})
        state["epoch"] = epoch + 1
        _save(out_dir / "last.pt", {**state, "identity": identity, "model": model.state_dict(),
                                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                    "rng": _rng_state()})
    start = "random" if settings.weights is None else f"{settings.weights} (sha256 {_sha256(settings.weights)})"
    return TrainResult(state["best"][0], state["best"][1], dict(state["history"]), out_dir / "best.pt",
                       preprocessing, start)


def _preprocessing(settings: SegmenterSettings, train: Sequence[Sample]) -> dict:
    if settings.normalisation == "imagenet":
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    else:
        mean, std = channel_statistics([image for image, _ in train], settings.colour)
    return dataclasses.asdict(Preprocessing(settings.imgsz, settings.colour, tuple(mean), tuple(std)))


class _Samples(Dataset):
    """Training pairs as tensors; an item is ``(index, flip)`` so the sampler decides every random choice."""

    def __init__(self, samples: Sequence[Sample], n_classes: int, settings: SegmenterSettings,
                 preprocessing: Preprocessing) -> None:
        self.samples, self.n_classes, self.ignore = samples, n_classes, settings.ignore
        self.preprocessing = preprocessing

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, item: tuple[int, bool]) -> tuple[torch.Tensor, torch.Tensor]:
        index, flip = item
        image_path, mask_path = self.samples[index]
        image = read_input(image_path, self.preprocessing.colour)
        mask = resize_mask(read_mask(mask_path, self.n_classes, self.ignore, size=image.shape[:2]),
                           self.preprocessing.imgsz)
        if flip:
            image, mask = image[:, ::-1], mask[:, ::-1]
        return to_tensor(image, self.preprocessing), torch.from_numpy(mask.astype(np.int64))


def _train_epoch(model: torch.nn.Module, optimizer: torch.optim.Optimizer, data: _Samples,
                 settings: SegmenterSettings, epoch: int, device: torch.device) -> None:
    generator = torch.Generator().manual_seed(settings.seed * 1_000_003 + epoch)
    order = torch.randperm(len(data), generator=generator).tolist()
    flips = (torch.rand(len(data), generator=generator) < 0.5).tolist()
    loader = DataLoader(data, batch_size=settings.batch, sampler=list(zip(order, flips)),
                        num_workers=settings.workers)
    model.train()
    for images, masks in loader:
        loss = F.cross_entropy(model(images.to(device)), masks.to(device), ignore_index=settings.ignore)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def _validate(model: torch.nn.Module, val: Sequence[Sample], classes: tuple[str, ...], settings: SegmenterSettings,
              preprocessing: Preprocessing, device: torch.device) -> float:
    """Validation mIoU at the images' own size, as the test set is scored."""
    masks = {Path(image).stem: mask for image, mask in val}
    total = np.zeros((len(classes), len(classes)), np.int64)
    for stem, prediction in segment(model, [image for image, _ in val], preprocessing, device, settings.batch):
        truth = read_mask(masks[stem], len(classes), settings.ignore, size=prediction.shape)
        total += confusion(prediction, truth, len(classes), settings.ignore)
    return float(values(total)[0])


def _resume(path: Path, identity: dict, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
            scheduler: torch.optim.lr_scheduler.LRScheduler) -> dict | None:
    """The saved training state, loaded into the given objects, or None when there is none."""
    if not path.is_file():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any damage: the message names the file; nothing of it is trusted
        raise SegmenterError(f"{path}: damaged training checkpoint ({type(error).__name__}): remove it to train "
                             "this segmenter from the start") from error
    if saved["identity"] != identity:
        differing = [key for key in identity if saved["identity"].get(key) != identity[key]]
        raise SegmenterError(f"{path}: written by a training run with other {' and '.join(differing)}: remove the "
                             "folder to train this segmenter from the start, or resume with the same ones")
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    torch.set_rng_state(saved["rng"]["cpu"])
    if torch.cuda.is_available() and saved["rng"]["cuda"]:
        torch.cuda.set_rng_state_all(saved["rng"]["cuda"])
    log.info("%s: resuming after epoch %d", path, saved["epoch"])
    return {key: saved[key] for key in ("epoch", "history", "best", "preprocessing")}


def _rng_state() -> dict:
    """torch's generators: drop-path draws from the CPU's, or from the GPU's when training there."""
    return {"cpu": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _save(path: Path, payload: dict) -> None:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _sha256(path: str) -> str:
    return sha256_file(weights_file(Path(path)))
