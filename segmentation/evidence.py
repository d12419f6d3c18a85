"""The evidence one (method, seed) leaves on the test set, written where the caller says.

- ``confusion.npz``: one confusion matrix per test image (:mod:`segmentation.confusion`), all that the
  statistics across methods and seeds need;
- the predicted masks as palette PNGs (class indices, in the dataset's colours), to look at and to
  recompute anything from;
- ``results.json``: mIoU, pixel accuracy and IoU per class on the whole test set, each with its 95%
  image-bootstrap interval (percentile; the run's own replicates and RNG seed, recorded).
Every file is written atomically; a class with no IoU on the test set (neither present nor predicted)
is ``null`` in JSON.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from fusionbench.files import atomic_write_text
from fusionbench.stats import Draws, over_drawn_seeds, percentile_interval
from segmentation.confusion import ConfusionError, Confusions, confusion, save
from segmentation.masks import IGNORE, Colour, dataset_palette, read_mask, write_index_png
from segmentation.statistics import MIOU, PIXEL_ACCURACY, point_values, replicate_values

CONVENTION = ("dataset-level IoU from the summed confusion matrix of all test images; mIoU is the mean over "
              "every class, background/unlabelled included, leaving out classes neither present nor predicted")


def write_evidence(predictions: Iterable[tuple[str, np.ndarray]], masks: Mapping[str, str | os.PathLike],
                   classes: Sequence[str], confusion_path: str | os.PathLike, masks_dir: str | os.PathLike,
                   results_path: str | os.PathLike, replicates: int, seed: int, ignore: int = IGNORE,
                   palette: Sequence[Colour] | None = None) -> dict:
    """Score ``predictions`` ((stem, class indices) per test image) against the ground-truth ``masks``
    (stem -> mask file, in test-set order) and write the three pieces of evidence; returns the results."""
    classes, masks_dir = tuple(classes), Path(masks_dir)
    palette = dataset_palette(classes) if palette is None else palette
    predicted = {}
    for stem, prediction in predictions:
        if stem not in masks:
            raise ConfusionError(f"a prediction for {stem}, which has no ground-truth mask among the "
                                 f"{len(masks)} test images")
        write_index_png(masks_dir / f"{stem}.png", prediction, palette)
        truth = read_mask(masks[stem], len(classes), ignore, size=prediction.shape)
        predicted[stem] = confusion(prediction, truth, len(classes), ignore)
    unpredicted = [stem for stem in masks if stem not in predicted]
    if unpredicted:
        raise ConfusionError(f"no prediction for {len(unpredicted)} of {len(masks)} test images "
                             f"(e.g. {unpredicted[0]})")
    run = Confusions(tuple(masks), classes, np.stack([predicted[stem] for stem in masks]))
    save(confusion_path, run)
    results = summary(run, replicates, seed)
    atomic_write_text(results_path, json.dumps(results, indent=1) + "\n")
    return results


def summary(run: Confusions, replicates: int, seed: int) -> dict:
    """The results of one (method, seed): point values and 95% image-bootstrap intervals."""
    (point,) = point_values([run])
    draws = Draws.make(len(run.stems), 1, replicates, seed)
    low, high = percentile_interval(over_drawn_seeds(replicate_values([run], draws), draws))
    interval = [[_number(a), _number(b)] for a, b in zip(low, high)]
    return {MIOU: _number(point[0]), f"{MIOU}_ci95": interval[0],
            PIXEL_ACCURACY: _number(point[1]), f"{PIXEL_ACCURACY}_ci95": interval[1],
            "iou": {name: {"value": _number(value), "ci95": bounds}
                    for name, value, bounds in zip(run.classes, point[2:], interval[2:])},
            "classes": list(run.classes), "images": len(run.stems), "convention": CONVENTION,
            "bootstrap": {"replicates": replicates, "seed": seed, "level": 0.95, "method": "percentile, images"}}


def _number(value: float) -> float | None:
    return None if math.isnan(value) else float(value)
