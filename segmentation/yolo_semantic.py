"""YOLO26n-sem through ultralytics' own ``semantic`` task: a second segmenter, trained offline.

Call ``fusionbench.ultralytics_offline.use_offline_ultralytics`` before anything here, so ultralytics is
imported without a network.

**Dataset** (:func:`write_dataset`): ultralytics reads ``images/<split>/`` beside ``masks/<split>/``
(class-index PNGs, 255 ignored). The images are symlinks to the given files (``grey``: their BT.601
luminance written as grey PNGs); the masks are validated and written as plain 8-bit PNGs with the ignore
value as 255 (ultralytics reads a palette PNG whose colours are all grey as grey levels, not indices; and it
skips a pair it finds corrupt, which would silently shrink the training set).

**Training** (:func:`train`): the settings mean what they mean for SegFormer (``segmentation.train``):
AdamW (betas 0.9, 0.999) at ``lr`` with cosine decay to 1 % of it, ``weight_decay``, ``batch`` images per
optimizer step, ``epochs`` epochs, no warm-up. For that, ultralytics' own defaults are overridden: its
gradient accumulation up to 64 images (``nbs``), its 3 warm-up epochs, its early stopping (``patience``)
and its AMP (whose CUDA self-test downloads a model). The rest is ultralytics' recipe: its loss, its
augmentation (mosaic, HSV, translation, scale, horizontal flips), weight decay on convolution weights only,
the EMA of the weights (what is validated and kept).
Seeded, ``deterministic=True`` (as the detection rows).

**Selection**: ultralytics validates after every epoch and keeps ``best.pt`` by its fitness, the val mIoU
(at ``imgsz``, letter-boxed; averaged over the classes present in the val ground truth; a later epoch that
ties replaces it). A callback records each epoch's val mIoU and which epoch ``best.pt`` holds
(``selection.json`` in the training folder).

**Interrupted runs restart**: ultralytics' resume does not restore the random state of its augmentation,
so a resumed run would not end with the weights of an uninterrupted one; an unfinished training folder is
removed and trained again from epoch 0, to the same weights.

**Prediction** (:func:`predict`): ultralytics' predictor letter-boxes each image to ``imgsz``, resizes
the logits back to the image's size and takes the arg-max per pixel.

Checkpoints (pre-trained weights, ``best.pt``) are read only through ultralytics' restricted loader.
"""
from __future__ import annotations

import io
import json
import logging
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

from fusionbench.files import atomic_write_bytes, atomic_write_text
from fusionbench.ultralytics_offline import DamagedCheckpointError, load_checkpoint, training_finished
from segmentation.inputs import image_shape, read_input
from segmentation.masks import IGNORE, read_mask
from segmentation.settings import SegmenterError

log = logging.getLogger(__name__)

Sample = tuple[str | os.PathLike, str | os.PathLike]  # (image file, its class-index mask file)
SELECTION = "selection.json"  # in the training folder: val mIoU per epoch and the epoch best.pt holds
AUGMENTATION = "ultralytics' defaults: mosaic (off for the last 10 epochs), HSV, translation, scale, horizontal flips"
SELECTED_BY = ("ultralytics' best.pt: val mIoU of its validator (letter-boxed to imgsz; mean over the classes "
               "present in the val ground truth; the last of tied epochs)")


@dataclass(frozen=True)
class TrainSettings:
    """What decides the trained weights (:meth:`arguments`), and the speed-only ``workers`` and ``device``."""

    epochs: int
    imgsz: int
    batch: int
    lr: float
    weight_decay: float
    seed: int
    workers: int = 0
    device: str | None = None  # None: ultralytics picks the first GPU, else the CPU

    def arguments(self) -> dict[str, Any]:
        """Ultralytics' train arguments that decide the weights (see the module's docstring)."""
        return {"epochs": self.epochs, "imgsz": self.imgsz, "batch": self.batch, "seed": self.seed,
                "deterministic": True, "optimizer": "AdamW", "lr0": self.lr, "lrf": 0.01, "cos_lr": True,
                "momentum": 0.9, "weight_decay": self.weight_decay, "nbs": self.batch, "warmup_epochs": 0.0,
                "patience": 0, "amp": False}


@dataclass(frozen=True)
class Dataset:
    """Ultralytics' dataset file and the image files it lists, per split (as ultralytics reads them)."""

    data_yaml: Path
    images: dict[str, list[Path]]


@dataclass(frozen=True)
class Trained:
    """The weights to evaluate, the epoch they are from (1-based) and the val mIoU per epoch."""

    weights: Path
    epoch: int
    val_miou: dict[int, float]


def model_source(weights: str | os.PathLike | None, allow_random: bool, config: str, release: str) -> str:
    """What ultralytics trains from: a checked local weights file (one the restricted loader reads), or the
    model ``config`` (an ultralytics model YAML) from a random start when allowed. ``release`` names the file
    users download for it."""
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise SegmenterError(f"{path}: pre-trained segmenter weights not found (for this row: {release} from "
                                 "https://github.com/ultralytics/assets/releases)")
        load_checkpoint(path)  # a file that names code is refused here, with its name
        return str(path.resolve())
    if not allow_random:
        raise SegmenterError(f"no pre-trained weights for {config}: give a local weights file ({release}, "
                             "ultralytics' release), or allow a random start explicitly")
    log.warning("!" * 78)
    log.warning("NO PRE-TRAINED SEGMENTER WEIGHTS: training %s from a random start.", config)
    log.warning("mIoU will be far below what a pre-trained start reaches; give the path of %s.", release)
    log.warning("!" * 78)
    return config


def write_dataset(folder: str | os.PathLike, samples: Mapping[str, Sequence[Sample]], classes: Sequence[str],
                  ignore: int = IGNORE, colour: str = "colour") -> Dataset:
    """Build ultralytics' dataset of ``samples`` (split -> pairs) in ``folder``, replacing what was there
    (``data.yaml`` with absolute paths)."""
    folder = Path(folder).resolve()
    shutil.rmtree(folder / "images", ignore_errors=True)
    shutil.rmtree(folder / "masks", ignore_errors=True)
    images: dict[str, list[Path]] = {}
    for split, pairs in samples.items():
        images[split] = []
        for image, mask in pairs:
            image = Path(image)
            indices = read_mask(mask, len(classes), ignore, size=image_shape(image))
            ignored = np.where(indices == ignore, 255, indices).astype(np.uint8)
            _write_png(folder / "masks" / split / f"{image.stem}.png", ignored)
            if colour == "grey":
                target = folder / "images" / split / f"{image.stem}.png"
                _write_png(target, np.round(read_input(image, "grey")[..., 0] * 255).astype(np.uint8))
            else:
                target = folder / "images" / split / image.name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(image.resolve())
            images[split].append(target)
    data = {"path": str(folder), **{split: f"images/{split}" for split in samples}, "masks_dir": "masks",
            "names": dict(enumerate(classes))}
    atomic_write_text(folder / "data.yaml", yaml.safe_dump(data, sort_keys=False))
    return Dataset(folder / "data.yaml", images)


def _write_png(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    Image.fromarray(array, mode="L").save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


def train(data_yaml: str | os.PathLike, train_dir: str | os.PathLike, source: str, settings: TrainSettings) -> Trained:
    """Train into ``train_dir`` (ultralytics' folder: weights/, results.csv, selection.json), or return the
    finished training there; an unfinished one is removed and trained again from epoch 0."""
    from ultralytics import YOLO

    train_dir = Path(train_dir).resolve()
    if _finished(train_dir / "weights" / "last.pt"):
        log.info("%s: training already finished", train_dir)
        return trained(train_dir)
    if train_dir.exists():
        log.info("%s: unfinished training removed; training again from epoch 0 (a resume would not repeat "
                 "ultralytics' augmentation draws)", train_dir)
        shutil.rmtree(train_dir)
    model = YOLO(source, task="semantic")
    model.add_callback("on_model_save", _SelectionRecorder(train_dir / SELECTION))
    log.info("training %s in %s", source, train_dir)
    model.train(data=str(Path(data_yaml).resolve()), workers=settings.workers, device=settings.device,
                project=str(train_dir.parent), name=train_dir.name, exist_ok=True, plots=False, verbose=False,
                val=True, **settings.arguments())
    return trained(train_dir)


def _finished(last: Path) -> bool:
    """Whether ``last`` is a finished training's; a damaged file is not (a file that names code is refused)."""
    if not last.is_file():
        return False
    try:
        return training_finished(last)
    except DamagedCheckpointError as error:
        log.warning("%s", error)
        return False


class _SelectionRecorder:
    """``on_model_save`` callback: each epoch's val mIoU, and the epoch ultralytics just wrote best.pt for
    (it does so when the epoch's fitness equals the best so far)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.record: dict[str, Any] = {"val_miou": {}, "best_epoch": None}

    def __call__(self, trainer: Any) -> None:
        epoch = trainer.epoch + 1
        self.record["val_miou"][str(epoch)] = float(trainer.fitness)
        if trainer.fitness == trainer.best_fitness:
            self.record["best_epoch"] = epoch
        atomic_write_text(self.path, json.dumps(self.record, indent=1) + "\n")


def trained(train_dir: Path) -> Trained:
    """The finished training in ``train_dir``: best.pt and its epoch, from the recorded selection."""
    record = json.loads((train_dir / SELECTION).read_text())
    return Trained(train_dir / "weights" / "best.pt", int(record["best_epoch"]),
                   {int(epoch): value for epoch, value in record["val_miou"].items()})


def predict(weights: str | os.PathLike, images: Sequence[str | os.PathLike], imgsz: int,
            device: str | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """(stem, (H, W) uint8 class indices at the image's own size) per image."""
    from ultralytics import YOLO

    load_checkpoint(Path(weights))  # refused in one line if it names code (YOLO() would say it at length)
    model = YOLO(str(weights), task="semantic")
    for result in model.predict(source=[str(path) for path in images], stream=True, imgsz=imgsz, device=device,
                                verbose=False):
        yield Path(result.path).stem, result.semantic_mask.data.cpu().numpy().astype(np.uint8)
