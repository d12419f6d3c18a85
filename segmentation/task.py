"""Semantic segmentation as a downstream task: a segmenter per fused set and seed, mIoU from per-image
confusion matrices.

Two segmenter rows (:data:`MODELS`): ``segformer_b0``, the field's protocol (SegFormer-B0 through
segmentation-models-pytorch, :mod:`segmentation.train`), and ``yolo26n_sem``, ultralytics' own
``semantic`` task (:mod:`segmentation.yolo_semantic`); both write the same evidence.

Every method's segmenter is trained with the same settings (the ``segment`` section), seed and split
on that method's fused images and the benchmark's masks (``<bench>/masks/<stem>.png``, written by
``prepare``), selected by val mIoU and evaluated on test. Files of one (model, method, seed) run, beside
the stage's ``protocol.json`` / ``results.json`` (names: :class:`SegmentationFiles`)::

    train/          the segmenter's training: last.pt (every epoch, exact resume), best.pt (best val mIoU);
                    for yolo26n_sem ultralytics' folder (weights/, results.csv, selection.json)
    dataset/        yolo26n_sem only: ultralytics' dataset (data.yaml, images/ as links, masks/)
    confusion.npz   one int64 confusion matrix per test image, keyed by stem (the statistics' evidence)
    predicted/      the test predictions as class-index PNGs in the dataset's palette

mIoU convention (:data:`segmentation.evidence.CONVENTION`): IoU per class from the confusion matrix summed
over the test images (dataset-level, as mmsegmentation and the field compute it), averaged over every class,
background/unlabelled included (MSRS's 9-class mIoU), leaving out a class neither present nor predicted.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal, Optional, Sequence

import numpy as np
from PIL import Image
from pydantic import Field, field_validator

from fusionbench.benchmark import SPLITS, Benchmark
from fusionbench.errors import FusionBenchError
from fusionbench.files import atomic_write_text, sha256_file
from fusionbench.fused_set import fused_set_identity
from fusionbench.identity import weights_source
from fusionbench.layout import UnitFiles
from fusionbench.settings import Section, check_seeds, check_weights, weights_for
from fusionbench.stats import Draws
from fusionbench.tasks import Model, Statistic, Task, Unit, get_model, register_task
from segmentation import confusion, statistics

log = logging.getLogger(__name__)

INPUT_KEYS = ("fused_set", "masks")


class SegmentationError(FusionBenchError):
    """The segmentation task cannot run (no masks in the benchmark, bad setting)."""


class SegmentationSettings(Section):
    """The ``segment`` section: identical for every method of a run (recorded in each run's protocol.json).
    Defaults follow the field's SegFormer-B0 script (TASKS.md): 512 px, AdamW 1e-4 with cosine decay, 100
    epochs, validation every 5."""

    weights: Optional[Path | dict[str, Path]] = Field(
        None, description="pre-trained segmenter weights: a path (one segmenter listed in tasks.segmentation) or "
                          "{model: path}. segformer_b0: NVIDIA's mit_b0.pth (encoder), a whole SegFormer checkpoint "
                          "or a local HF folder; yolo26n_sem: ultralytics' yolo26n-sem.pt. A model without weights "
                          "starts random, only with allow_random")
    allow_random: bool = Field(False, description="accept a randomly initialised segmenter (logged, marked)")
    epochs: int = Field(100, ge=1, description="segmenter training epochs per method")
    imgsz: int = Field(512, ge=32, multiple_of=32,
                       description="input size of training and prediction (segformer_b0: resized to a square; "
                                   "yolo26n_sem: long side, letter-boxed)")
    batch: int = Field(8, ge=1, description="segmenter batch size (images per optimizer step)")
    lr: float = Field(1e-4, gt=0, description="AdamW learning rate (cosine decay to 1% of it)")
    weight_decay: float = Field(1e-2, ge=0, description="AdamW weight decay")
    workers: int = Field(4, ge=0, description="data-loading processes (speed only)")
    eval_every: int = Field(5, ge=1, description="validate every this many epochs (and at the last); yolo26n_sem: "
                                                 "ultralytics validates every epoch (recorded as 1)")
    seeds: list[int] = Field([0, 1, 2], min_length=1, description="segmenter training seeds: every method is trained "
                                                                  "once per seed")
    normalisation: Literal["imagenet", "per_method"] = Field(
        "imagenet", description="input normalisation: fixed ImageNet mean/std, or each method's own mean/std over "
                                "its train images (as PSFusion does); recorded in every result. yolo26n_sem: "
                                "ultralytics' pixels / 255 (recorded; per_method is refused)")
    colour: Literal["colour", "grey"] = Field("colour", description="colour: the fused image as stored (fused "
                                                                   "luminance, visible chroma); grey: its luminance")

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: list[int]) -> list[int]:
        return check_seeds(value)


MODELS = {model.name: model for model in (
    Model("segformer_b0", "SegFormer-B0", {"library": "smp", "architecture": "segformer_b0"}),
    Model("yolo26n_sem", "YOLO26n-sem (ultralytics)",
          {"library": "ultralytics", "config": "yolo26n-sem.yaml", "weights": "yolo26n-sem.pt"}),
)}
ULTRALYTICS_NORMALISATION = "none: pixels / 255 (ultralytics)"


def _uses_ultralytics(model: Model) -> bool:
    """Whether the row trains through ultralytics (else segmentation-models-pytorch's SegFormer)."""
    return model.options.get("library") == "ultralytics"


def check(settings: SegmentationSettings, models: Sequence[str]) -> None:
    """Weights per listed segmenter; no normalisation a listed segmenter cannot apply."""
    check_weights(settings.weights, models, "segmenter")
    fixed = [m for m in models if _uses_ultralytics(get_model("segmentation", m))]
    if settings.normalisation == "per_method" and fixed:
        raise ValueError(f"normalisation per_method: {', '.join(fixed)} takes ultralytics' input (pixels / 255) "
                         "only; evaluate it in a run with normalisation imagenet (recorded there as not applying)")


@dataclass(frozen=True)
class SegmentationFiles(UnitFiles):
    """One (model, method, seed) segmenter run: the stage's files and the segmenter's evidence."""

    @property
    def train(self) -> Path:
        """The training folder (last.pt, best.pt)."""
        return self.folder / "train"

    @property
    def confusion(self) -> Path:
        return self.folder / "confusion.npz"

    @property
    def predicted(self) -> Path:
        """The test predictions as index PNGs."""
        return self.folder / "predicted"

    @property
    def dataset(self) -> Path:
        """Ultralytics' dataset (yolo26n_sem): data.yaml, images/ (links to the fused set), masks/."""
        return self.folder / "dataset"

    @property
    def evidence(self) -> tuple[Path, ...]:
        return (self.confusion,)


# --- one unit ---------------------------------------------------------------------------------

def segmenter_settings(unit: Unit):
    """The SegFormer row's settings for this unit (its seed, device and weights)."""
    from segmentation.settings import SegmenterSettings

    settings: SegmentationSettings = unit.settings
    weights = weights_for(settings.weights, unit.model.name)
    return SegmenterSettings(
        model=unit.model.options["architecture"], epochs=settings.epochs, imgsz=settings.imgsz, batch=settings.batch,
        lr=settings.lr, weight_decay=settings.weight_decay, workers=settings.workers, seed=unit.seed,
        eval_every=settings.eval_every, device=unit.device or "auto",
        weights=str(Path(weights).expanduser().resolve()) if weights else None,
        allow_random=settings.allow_random, normalisation=settings.normalisation, colour=settings.colour,
        ignore=segmentation_of(unit.benchmark)["ignore"])


def segmentation_of(benchmark: Benchmark) -> dict[str, Any]:
    found = benchmark.segmentation
    if not found:
        raise SegmentationError(f"{benchmark.root}: the benchmark has no segmentation masks (its dataset layout has "
                                "none); prepare a dataset with masks (data/README.md) or leave the segmentation "
                                "task out of the run (tasks.segmentation=[])")
    return found


def masks_identity(benchmark: Benchmark) -> str:
    """sha256 over every split's masks (split, stem, content hash) and the classes: a change retrains."""
    content = [(split, stem, sha256_file(benchmark.mask_path(stem))) for split in SPLITS for stem in benchmark.stems(split)]
    return hashlib.sha256(json.dumps([segmentation_of(benchmark)["classes"], content]).encode()).hexdigest()


def ultralytics_settings(unit: Unit):
    """The ultralytics row's training settings for this unit (its seed and device)."""
    from segmentation.yolo_semantic import TrainSettings

    settings: SegmentationSettings = unit.settings
    return TrainSettings(epochs=settings.epochs, imgsz=settings.imgsz, batch=settings.batch, lr=settings.lr,
                         weight_decay=settings.weight_decay, seed=unit.seed, workers=settings.workers,
                         device=unit.device)


def protocol(unit: Unit) -> dict[str, Any]:
    """What must not change between the start and the end of a run: its settings, the fused set and masks."""
    if _uses_ultralytics(unit.model):
        deciding = _ultralytics_protocol(unit)
    else:
        deciding = segmenter_settings(unit).deciding()
        weights = deciding.pop("weights")
        deciding = {"model": unit.model.name, "model_source": weights_source(weights, "random"),
                    **deciding}
    return {**deciding, "fused_set": fused_set_identity(unit.benchmark, unit.method),
            "masks": masks_identity(unit.benchmark)}


def _ultralytics_protocol(unit: Unit) -> dict[str, Any]:
    """The section's settings as the ultralytics row applies them: the shared ones by name (``eval_every`` and
    ``normalisation`` as that row has them), and the ultralytics arguments they become."""
    from segmentation.yolo_semantic import AUGMENTATION, SELECTED_BY

    settings: SegmentationSettings = unit.settings
    weights = weights_for(settings.weights, unit.model.name)
    train = ultralytics_settings(unit)
    return {"model": unit.model.name,
            "model_source": weights_source(weights, "random"),
            "epochs": train.epochs, "imgsz": train.imgsz, "batch": train.batch, "lr": train.lr,
            "weight_decay": train.weight_decay, "seed": train.seed, "eval_every": 1,
            "normalisation": ULTRALYTICS_NORMALISATION, "colour": settings.colour,
            "ignore": segmentation_of(unit.benchmark)["ignore"], "ultralytics_args": train.arguments(),
            "augmentation": AUGMENTATION, "selected_by": SELECTED_BY}


def run(unit: Unit) -> dict[str, Any]:
    """Train (or finish what a killed run left), select by val mIoU, predict the test split and write the evidence."""
    from segmentation.evidence import write_evidence

    benchmark, files = unit.benchmark, SegmentationFiles(unit.folder)
    found = segmentation_of(benchmark)
    samples = {split: [(benchmark.fused_image(unit.method, split, stem), benchmark.mask_path(stem))
                       for stem in benchmark.stems(split)] for split in SPLITS}
    predictions, selection = (_ultralytics_row if _uses_ultralytics(unit.model) else _segformer_row)(unit, samples)
    results = write_evidence(predictions, {Path(image).stem: mask for image, mask in samples["test"]},
                             found["classes"], files.confusion, files.predicted, files.results,
                             unit.bootstrap.replicates, unit.bootstrap.seed, found["ignore"],
                             [tuple(c) for c in found["palette"]])
    results = {"method": unit.method, "seed": unit.seed, **protocol(unit), **results, **selection}
    atomic_write_text(files.results, json.dumps(results, indent=1) + "\n")  # last: marks the run done
    return results


Predictions = Iterator[tuple[str, np.ndarray]]


def _segformer_row(unit: Unit, samples: dict[str, list[tuple[Path, Path]]]) -> tuple[Predictions, dict[str, Any]]:
    """Train SegFormer (resuming exactly), and its test predictions with what was selected."""
    from segmentation.predict import predict
    from segmentation.train import train_segmenter

    settings = segmenter_settings(unit)
    classes = segmentation_of(unit.benchmark)["classes"]
    trained = train_segmenter(samples["train"], samples["val"], classes, settings, SegmentationFiles(unit.folder).train)
    log.info("%s %s seed %d: evaluating epoch %d (val mIoU %.4f) on the test split", unit.model.name, unit.method,
             unit.seed, trained.best_epoch, trained.best_miou)
    predictions = predict(trained.best_weights, [image for image, _ in samples["test"]], settings)
    return predictions, {"selected_epoch": trained.best_epoch,
                         "val_miou_per_epoch": {str(epoch): value for epoch, value in trained.val_miou.items()},
                         "preprocessing": dataclasses.asdict(trained.preprocessing)}


def _ultralytics_row(unit: Unit, samples: dict[str, list[tuple[Path, Path]]]) -> tuple[Predictions, dict[str, Any]]:
    """Train YOLO26n-sem through ultralytics offline (an unfinished training restarts), and its test predictions
    with what was selected."""
    from fusionbench.ultralytics_offline import cpu_threads, use_offline_ultralytics
    from segmentation import yolo_semantic

    settings: SegmentationSettings = unit.settings
    files, found = SegmentationFiles(unit.folder), segmentation_of(unit.benchmark)
    use_offline_ultralytics(unit.workspace / "ultralytics")
    source = yolo_semantic.model_source(weights_for(settings.weights, unit.model.name), settings.allow_random,
                                        unit.model.options["config"], unit.model.options["weights"])
    dataset = yolo_semantic.write_dataset(files.dataset, samples, found["classes"], found["ignore"], settings.colour)
    train = ultralytics_settings(unit)
    with cpu_threads():
        trained = yolo_semantic.train(dataset.data_yaml, files.train, source, train)
    log.info("%s %s seed %d: evaluating epoch %d (val mIoU %.4f, ultralytics') on the test split",
             unit.model.name, unit.method, unit.seed, trained.epoch, trained.val_miou[trained.epoch])

    def predictions() -> Predictions:  # ultralytics' threads while they are drawn
        with cpu_threads():
            yield from yolo_semantic.predict(trained.weights, dataset.images["test"], train.imgsz, train.device)

    return predictions(), {"selected_epoch": trained.epoch,
                           "val_miou_per_epoch": {str(epoch): value for epoch, value in trained.val_miou.items()},
                           "weights": str(trained.weights)}


# --- statistics from the per-image confusion matrices -----------------------------------------

class SegmentationStatistics:
    """mIoU (primary), pixel accuracy and IoU per class from summed per-image confusion matrices."""

    primary = Statistic(statistics.MIOU, "mIoU")

    def load(self, folder: Path) -> confusion.Confusions:
        return confusion.load(SegmentationFiles(folder).confusion)

    def statistics(self, evidence: confusion.Confusions) -> list[Statistic]:
        return [self.primary, Statistic(statistics.PIXEL_ACCURACY, "pixel accuracy"),
                *(Statistic(f"iou/{name}", f"IoU {name}", per_class=name) for name in evidence.classes)]

    def images(self, evidence: confusion.Confusions) -> tuple[str, ...]:
        return tuple(evidence.stems)

    def point_values(self, seeds: Sequence[confusion.Confusions]) -> np.ndarray:
        return statistics.point_values(list(seeds))

    def replicate_values(self, seeds: Sequence[confusion.Confusions], draws: Draws) -> np.ndarray:
        return statistics.replicate_values(list(seeds), draws)

    def permuted_deltas(self, a: Sequence[confusion.Confusions], b: Sequence[confusion.Confusions], permutations: int,
                        rng: np.random.Generator) -> np.ndarray:
        return statistics.permuted_deltas(list(a), list(b), permutations, rng)


# --- the report's figures ---------------------------------------------------------------------

def figures(view: Any) -> list[dict[str, Any]]:
    """A few test images: the sources, the ground truth and, per method, its fused input and its prediction in
    the dataset's palette (first seed); and the validation mIoU per evaluated epoch."""
    found = view.benchmark.segmentation
    if not found:
        return []
    palette = np.array([*found["palette"], *[[255, 255, 255]] * (256 - len(found["palette"]))], np.uint8)
    grids = []
    for stem in view.stems:
        tiles = [*view.sources(stem), ("ground truth", palette[_indices(view.benchmark.mask_path(stem))])]
        for method in view.methods:
            predicted = SegmentationFiles(view.first_seed_folders[method]).predicted / f"{stem}.png" \
                if method in view.first_seed_folders else None
            tiles += [(f"{method}: fused", view.fused(method, stem)),
                      (f"{method}: predicted", palette[_indices(predicted)] if predicted and predicted.is_file() else None)]
        grids.append({"kind": "grid", "title": f"test image {stem}", "tiles": tiles})
    curves = {m: _curve(r["val_miou_per_epoch"]) for m, r in view.first_seed_results.items()
              if r.get("val_miou_per_epoch")}
    made = [{"kind": "caption", "text": f"Ground truth and each method's {view.model.summary} prediction in the "
                                        f"dataset's palette (seed {view.seeds[0]}); white: ignored pixels."}, *grids]
    if curves:
        made.append({"kind": "curves", "name": "validation", "x": "epoch", "series": curves,
                     "title": f"{view.model.summary}: validation mIoU (selects the evaluated epoch; seed {view.seeds[0]})"})
    return made


def _indices(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def _curve(per_epoch: dict[str, float]) -> Any:
    import pandas as pd

    epochs = sorted(per_epoch, key=int)
    return pd.DataFrame({"epoch": [int(e) for e in epochs], "val mIoU": [per_epoch[e] for e in epochs]})


TASK = register_task(Task(
    name="segmentation", title="Semantic segmentation", section="segment", settings=SegmentationSettings,
    labels=("masks",), models=MODELS, default_models=("segformer_b0",), statistics=SegmentationStatistics(),
    run=run, protocol=protocol, input_keys=INPUT_KEYS, files=SegmentationFiles, figures=figures, check=check,
    summary_fields=("selected_epoch", "val_miou_per_epoch", "miou", "miou_ci95", "pixel_accuracy"),
    code=("segmentation.task",),
))
