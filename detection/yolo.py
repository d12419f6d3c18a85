"""YOLO detectors through ultralytics: train on an image folder, select an epoch on val, predict.

Works on a YOLO dataset folder (``images/{train,val,test}`` beside ``labels/{train,val,test}``) and
knows nothing of how the images were made. Call ``fusionbench.ultralytics_offline.use_offline_ultralytics``
before anything here, so ultralytics is imported offline.

Model: ultralytics cannot load checkpoints of the original YOLOv5 repository (``yolov5s.pt``); it trains
its own "u" variant, ``yolov5su.pt`` (YOLOv5s backbone and neck with ultralytics' anchor-free split head
and its loss). Numbers are therefore comparable between the methods of one run, not digit-for-digit with
papers that trained the original YOLOv5s.

Model selection: the paper keeps the epoch with the best validation mAP@50. Ultralytics' ``best.pt``
uses its own fitness (mAP@50:95 in 8.4), so a callback keeps ``best_map50.pt``: the checkpoint of the
first epoch reaching the highest val mAP@50, with ``{"epoch", "map50"}`` stored inside it under
``"selection"`` so the record and the weights cannot disagree after an interruption.
"""
from __future__ import annotations

import logging
import os
import shutil
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import yaml

from detection.coco_eval import ImageDetections
from fusionbench.errors import FusionBenchError
from fusionbench.files import atomic_write_text
from fusionbench.ultralytics_offline import DamagedCheckpointError, load_checkpoint, training_finished

log = logging.getLogger(__name__)

SCRATCH_CONFIG = "yolov5s.yaml"
MAP50_KEY = "metrics/mAP50(B)"
FITNESS_KEY = "metrics/mAP50-95(B)"  # ultralytics 8.4 fitness = mAP@50:95 (weights 0, 0, 0, 1)
SELECT_BY = ("map50", "fitness")
TRAIN_LOG = "results.csv"  # ultralytics' per-epoch log in its training folder


AMP_MODES = (False, True, "fp16", "bf16")  # ultralytics 8.4's amp: off, fp16 (True is fp16), bf16


class TrainSettingsError(FusionBenchError):
    """A detector setting ultralytics would not accept."""


@dataclass(frozen=True)
class TrainSettings:
    """Everything that must be identical across the methods of one comparison."""

    epochs: int
    imgsz: int
    batch: int
    workers: int
    seed: int
    device: str | None = None  # None: ultralytics picks the first GPU, else the CPU
    amp: bool | str = False  # one of AMP_MODES, passed to ultralytics as given
    resume: bool = True  # False: an interrupted run restarts from epoch 0 (bit-identical to an uninterrupted one)
    extra: Mapping[str, Any] = field(default_factory=dict)  # further ultralytics train arguments (lr0, mosaic, ...)

    def __post_init__(self) -> None:
        if not any(self.amp is mode or (isinstance(mode, str) and self.amp == mode) for mode in AMP_MODES):
            raise TrainSettingsError(f"amp must be false, true, 'fp16' or 'bf16'; got {self.amp!r}")

    @property
    def needs_amp_check(self) -> bool:
        """fp16 autocast: ultralytics first runs its AMP self-test on CUDA, which loads yolo26n.pt
        (bf16 skips the self-test)."""
        return self.amp is True or self.amp == "fp16"


@dataclass(frozen=True)
class Selection:
    weights: Path
    epoch: int
    select_by: str


def model_source(weights: str | Path | None, allow_scratch: bool, config: str = SCRATCH_CONFIG,
                 release: str = "yolov5su.pt") -> str:
    """The model to train: a checked local weights file (one the restricted loader reads), or the detector's
    ``config`` (an ultralytics model YAML) from scratch when allowed. ``release`` names the file users
    download for it."""
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: detector weights not found. Download {release} from "
                "https://github.com/ultralytics/assets/releases and set detect.weights to its path "
                "(original YOLOv5 yolov5s.pt files cannot be loaded by ultralytics)."
            )
        load_checkpoint(path)  # a file that names code is refused here, with its name
        return str(path.resolve())
    if not allow_scratch:
        raise ValueError(f"no detector weights: set detect.weights to the path of {release}, "
                         f"or detect.allow_scratch=true to train {config} from random weights")
    log.warning("!" * 78)
    log.warning("NO PRE-TRAINED DETECTOR WEIGHTS: training %s from scratch.", config)
    log.warning("mAP will be far below published numbers; give the path of %s.", release)
    log.warning("!" * 78)
    return config


def write_data_yaml(path: str | Path, root: str | Path, classes: Sequence[str]) -> Path:
    """An ultralytics dataset file with absolute paths (relative ones resolve against its datasets dir)."""
    root = Path(root).resolve()
    for split in ("train", "val", "test"):
        for kind in ("images", "labels"):
            if not (root / kind / split).is_dir():
                raise FileNotFoundError(f"{root / kind / split}: dataset folder missing")
    data = {"path": str(root), "train": "images/train", "val": "images/val", "test": "images/test",
            "names": dict(enumerate(classes))}
    path = Path(path)
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))
    return path


def train(data_yaml: str | Path, train_dir: str | Path, source: str, settings: TrainSettings,
          callbacks: Mapping[str, Callable] | None = None) -> Path:
    """Train into ``train_dir`` (ultralytics' folder: weights/, results.csv); resume an interrupted run,
    return at once when a finished one is there. ``callbacks``: extra ultralytics callbacks by event name.
    Returns ``train_dir``."""
    from ultralytics import YOLO

    train_dir = Path(train_dir).resolve()
    last = train_dir / "weights" / "last.pt"
    if last.is_file() and not _readable_checkpoint(last):
        log.warning("%s: damaged checkpoint (interrupted while saving, or a full disk): restarting this "
                    "training from epoch 0; removing %s", last, train_dir)
        shutil.rmtree(train_dir)
    if last.is_file() and training_finished(last):
        log.info("%s: training already finished", train_dir)
        return train_dir
    resume = last.is_file() and settings.resume
    if last.is_file() and not resume:
        log.info("%s: interrupted run discarded (detect.resume=false): restarting from epoch 0", train_dir)
        shutil.rmtree(train_dir)
    if resume:
        _refuse_code_in(last.parent)
    model = YOLO(str(last) if resume else source)
    model.add_callback("on_model_save", Map50Keeper(train_dir / "weights" / "best_map50.pt"))
    for event, callback in (callbacks or {}).items():
        model.add_callback(event, callback)
    log.info("%s training in %s", "resuming" if resume else "starting", train_dir)
    model.train(
        data=str(Path(data_yaml).resolve()), epochs=settings.epochs, imgsz=settings.imgsz,
        batch=settings.batch, workers=settings.workers, seed=settings.seed, deterministic=True,
        device=settings.device, amp=settings.amp, project=str(train_dir.parent), name=train_dir.name,
        exist_ok=True, plots=False, resume=str(last) if resume else False, verbose=False, **settings.extra,
    )
    return train_dir


def _readable_checkpoint(path: Path) -> bool:
    """Whether ``path`` loads as an ultralytics checkpoint; a truncated file does not (a refused one raises)."""
    try:
        load_checkpoint(path)
    except DamagedCheckpointError as error:
        log.warning("%s", error)
        return False
    return True


def _refuse_code_in(weights_dir: Path) -> None:
    """Refuse a resumed training whose weights folder holds a checkpoint that names code: when a training
    ends, ultralytics rereads its checkpoints without restriction (``strip_optimizer`` on last.pt and
    best.pt), and a best.pt that no later epoch improved on would still be the planted file."""
    for path in sorted(weights_dir.glob("*.pt")):
        with suppress(DamagedCheckpointError):  # a damaged one is ultralytics' to skip or overwrite
            load_checkpoint(path)


class Map50Keeper:
    """``on_model_save`` callback keeping the checkpoint of the best val mAP@50 epoch (first one on ties)."""

    def __init__(self, path: Path):
        self.path = path
        self.best: float | None = None

    def __call__(self, trainer) -> None:
        if self.best is None:  # first call, perhaps after a resume: start from what is on disk
            self.best = read_selection(self.path)["map50"] if self.path.is_file() else -1.0
        value = float(trainer.metrics.get(MAP50_KEY, 0.0))
        if value > self.best:
            from ultralytics.utils.torch_utils import strip_optimizer

            tmp = self.path.with_name(f".{self.path.name}.tmp")
            strip_optimizer(trainer.last, str(tmp), updates={"selection": {"epoch": trainer.epoch + 1, "map50": value}})
            os.replace(tmp, self.path)
            self.best = value


def read_selection(weights: Path) -> dict:
    return load_checkpoint(weights)["selection"]


def val_curve(train_dir: str | Path) -> list[dict]:
    """Per-epoch validation metrics from ultralytics' results.csv (a resumed epoch counts once: the last row)."""
    import pandas as pd

    path = Path(train_dir) / TRAIN_LOG
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no training results (has training run?)")
    table = pd.read_csv(path).rename(columns=str.strip).drop_duplicates("epoch", keep="last")
    return [{"epoch": int(row["epoch"]), "map50": float(row[MAP50_KEY]), "map50_95": float(row[FITNESS_KEY])}
            for _, row in table.sort_values("epoch").iterrows()]


def select(train_dir: str | Path, select_by: str) -> Selection:
    """The weights to evaluate: best val mAP@50 (the paper's choice) or ultralytics' best.pt (its fitness)."""
    train_dir = Path(train_dir)
    if select_by == "map50":
        weights = train_dir / "weights" / "best_map50.pt"
        if not weights.is_file():
            raise FileNotFoundError(f"{weights}: missing (was the run trained with validation?)")
        return Selection(weights, int(read_selection(weights)["epoch"]), select_by)
    if select_by == "fitness":
        curve = val_curve(train_dir)
        epoch = curve[int(np.argmax([row["map50_95"] for row in curve]))]["epoch"]
        return Selection(train_dir / "weights" / "best.pt", epoch, select_by)
    raise ValueError(f"select_by {select_by!r}: expected one of {SELECT_BY}")


def predict(weights: str | Path, images: Sequence[Path], imgsz: int, conf: float, iou: float,
            device: str | None = None) -> Iterator[ImageDetections]:
    """Detections per image in original pixel coordinates (NMS at ``iou``, scores above ``conf``)."""
    from ultralytics import YOLO

    model = YOLO(str(weights))
    for result in model.predict(source=[str(p) for p in images], stream=True, imgsz=imgsz, conf=conf, iou=iou,
                                device=device, max_det=300, verbose=False):
        boxes = result.boxes
        yield ImageDetections(Path(result.path).name, boxes.xyxy.cpu().numpy(), boxes.conf.cpu().numpy(),
                              boxes.cls.cpu().numpy().astype(int))


def ultralytics_map50(weights: str | Path, data_yaml: str | Path, split: str, settings: TrainSettings,
                      conf: float, iou: float, out_dir: str | Path) -> float:
    """Ultralytics' own mAP@50 of ``weights`` on ``split`` (its matcher and AP interpolation)."""
    from ultralytics import YOLO

    out_dir = Path(out_dir).resolve()
    metrics = YOLO(str(weights)).val(
        data=str(Path(data_yaml).resolve()), split=split, imgsz=settings.imgsz, batch=settings.batch,
        workers=settings.workers, conf=conf, iou=iou, device=settings.device, plots=False,
        project=str(out_dir.parent), name=out_dir.name, exist_ok=True, verbose=False,
    )
    return float(metrics.box.map50)
