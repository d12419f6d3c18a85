"""Semantic segmentation as a downstream task: a segmenter per fused set and seed, mIoU from per-image
confusion matrices.

Every method's segmenter is trained with the same settings (the ``segment`` section), seed and split
on that method's fused images and the benchmark's masks (``<bench>/masks/<stem>.png``, written by
``prepare``), selected by val mIoU and evaluated on test. Files of one (model, method, seed) run, beside
the stage's ``protocol.json`` / ``results.json`` (names: :class:`SegmentationFiles`)::

    train/          the segmenter's training: last.pt (every epoch, exact resume), best.pt (best val mIoU)
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
from typing import Any, Literal, Optional, Sequence

import numpy as np
from PIL import Image
from pydantic import Field, field_validator

from fusionbench.benchmark import SPLITS, Benchmark
from fusionbench.errors import FusionBenchError
from fusionbench.files import atomic_write_text, sha256_file
from fusionbench.fused_set import fused_set_identity
from fusionbench.layout import UnitFiles
from fusionbench.settings import Section, check_seeds
from fusionbench.stats import Draws
from fusionbench.tasks import Model, Statistic, Task, Unit, register_task
from segmentation import confusion, statistics

log = logging.getLogger(__name__)

INPUT_KEYS = ("fused_set", "masks")


class SegmentationError(FusionBenchError):
    """The segmentation task cannot run (no masks in the benchmark, bad setting)."""


class SegmentationSettings(Section):
    """The ``segment`` section: identical for every method of a run (recorded in each run's protocol.json).
    Defaults follow the field's SegFormer-B0 script (TASKS.md): 512 px, AdamW 1e-4 with cosine decay, 100
    epochs, validation every 5."""

    weights: Optional[Path] = Field(None, description="pre-trained SegFormer-B0 weights: NVIDIA's mit_b0.pth (encoder), "
                                                      "a whole SegFormer checkpoint or a local HF folder; null: random "
                                                      "start, only with allow_random")
    allow_random: bool = Field(False, description="accept a randomly initialised segmenter (logged, marked)")
    epochs: int = Field(100, ge=1, description="segmenter training epochs per method")
    imgsz: int = Field(512, ge=32, multiple_of=32, description="square input size of training and prediction")
    batch: int = Field(8, ge=1, description="segmenter batch size")
    lr: float = Field(1e-4, gt=0, description="AdamW learning rate (cosine decay to 1% of it)")
    weight_decay: float = Field(1e-2, ge=0, description="AdamW weight decay")
    workers: int = Field(4, ge=0, description="data-loading processes (speed only)")
    eval_every: int = Field(5, ge=1, description="validate every this many epochs (and at the last)")
    seeds: list[int] = Field([0, 1, 2], min_length=1, description="segmenter training seeds: every method is trained "
                                                                  "once per seed")
    normalisation: Literal["imagenet", "per_method"] = Field(
        "imagenet", description="input normalisation: fixed ImageNet mean/std, or each method's own mean/std over "
                                "its train images (as PSFusion does); recorded in every result")
    colour: Literal["colour", "grey"] = Field("colour", description="colour: the fused image as stored (fused "
                                                                   "luminance, visible chroma); grey: its luminance")

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: list[int]) -> list[int]:
        return check_seeds(value)


MODELS = {"segformer_b0": Model("segformer_b0", "SegFormer-B0", {"architecture": "segformer_b0"})}


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
    def evidence(self) -> tuple[Path, ...]:
        return (self.confusion,)


# --- one unit ---------------------------------------------------------------------------------

def segmenter_settings(unit: Unit):
    """The segmentation package's settings for this unit (its seed and device)."""
    from segmentation.settings import SegmenterSettings

    settings: SegmentationSettings = unit.settings
    return SegmenterSettings(
        model=unit.model.options["architecture"], epochs=settings.epochs, imgsz=settings.imgsz, batch=settings.batch,
        lr=settings.lr, weight_decay=settings.weight_decay, workers=settings.workers, seed=unit.seed,
        eval_every=settings.eval_every, device=unit.device or "auto",
        weights=str(Path(settings.weights).expanduser().resolve()) if settings.weights else None,
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


def protocol(unit: Unit) -> dict[str, Any]:
    """What must not change between the start and the end of a run: its settings, the fused set and masks."""
    deciding = segmenter_settings(unit).deciding()
    weights = deciding.pop("weights")
    return {"model": unit.model.name, "model_source": f"pretrained {weights}" if weights else "random",
            **deciding, "fused_set": fused_set_identity(unit.benchmark, unit.method),
            "masks": masks_identity(unit.benchmark)}


def run(unit: Unit) -> dict[str, Any]:
    """Train (resuming what a killed run left), select by val mIoU, predict the test split and write the evidence."""
    from segmentation.evidence import write_evidence
    from segmentation.predict import predict
    from segmentation.train import train_segmenter

    settings = segmenter_settings(unit)
    benchmark, files = unit.benchmark, SegmentationFiles(unit.folder)
    classes = segmentation_of(benchmark)["classes"]
    samples = {split: [(benchmark.fused_image(unit.method, split, stem), benchmark.mask_path(stem))
                       for stem in benchmark.stems(split)] for split in SPLITS}
    trained = train_segmenter(samples["train"], samples["val"], classes, settings, files.train)
    log.info("%s %s seed %d: evaluating epoch %d (val mIoU %.4f) on the test split", unit.model.name, unit.method,
             unit.seed, trained.best_epoch, trained.best_miou)
    test = [image for image, _ in samples["test"]]
    results = write_evidence(predict(trained.best_weights, test, settings),
                             {Path(image).stem: mask for image, mask in samples["test"]}, classes, files.confusion,
                             files.predicted, files.results, unit.bootstrap.replicates, unit.bootstrap.seed,
                             settings.ignore, [tuple(c) for c in segmentation_of(benchmark)["palette"]])
    results = {"method": unit.method, "seed": unit.seed, **protocol(unit), **results,
               "selected_epoch": trained.best_epoch,
               "val_miou_per_epoch": {str(epoch): value for epoch, value in trained.val_miou.items()},
               "preprocessing": dataclasses.asdict(trained.preprocessing)}
    atomic_write_text(files.results, json.dumps(results, indent=1) + "\n")  # last: marks the run done
    return results


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
    run=run, protocol=protocol, input_keys=INPUT_KEYS, files=SegmentationFiles, figures=figures,
    summary_fields=("selected_epoch", "val_miou_per_epoch", "miou", "miou_ci95", "pixel_accuracy"),
    code=("segmentation.task",),
))
