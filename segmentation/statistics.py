"""Intervals and paired tests of mIoU from per-image confusion matrices (``../shared/STATISTICS.md``).

A segmenter run is one method trained with one seed; a method has one run per seed, the same seeds for
every method, all evaluated on the same test images.

- **Statistics** (:func:`statistic_names`): mIoU, pixel accuracy, IoU per class, all from the SUM of
  the per-image confusion matrices, as mmsegmentation and the field compute them: IoU_c = TP / (TP + FP
  + FN) over the whole test set (not a mean of per-image IoUs). mIoU averages every class, the
  background/unlabelled class included, as the MFNet/MSRS papers report their 9-class mIoU (SeAFusion,
  PSFusion); a class with neither ground truth nor prediction has no IoU (NaN) and is left out of the
  mean. Pixel accuracy is the share of counted (not ignored) pixels predicted right.
- **Bootstrap** (:class:`fusionbench.stats.Draws`, shared with every task): a replicate draws the test
  images with replacement (an image drawn twice counts twice) and the seed indices with replacement;
  its value is the mean over the drawn seeds of the statistic on the drawn images. A replicate's matrix
  is the count-weighted sum of the images' matrices: one matrix product for all replicates.
- **Permutation test**: under "A and B are exchangeable", each permutation swaps A's and B's matrices
  on a random subset of images (independently per seed) and recomputes the mean-over-seeds mIoU
  difference.
"""
from __future__ import annotations

import numpy as np

from fusionbench.stats import Draws, over_drawn_seeds  # noqa: F401  (re-exported: the task's statistics API)
from segmentation.confusion import ConfusionError, Confusions

MIOU, PIXEL_ACCURACY = "miou", "pixel_accuracy"


def statistic_names(classes: tuple[str, ...] | list[str]) -> list[str]:
    """Column names of the statistics: mIoU (the primary one), pixel accuracy, then ``iou/<class>``."""
    return [MIOU, PIXEL_ACCURACY, *(f"iou/{name}" for name in classes)]


def check_same_test_set(runs: dict[str, Confusions]) -> None:
    """Every run must hold the same test images and classes, in the same order."""
    names = list(runs)
    first = runs[names[0]]
    for name in names[1:]:
        run = runs[name]
        if run.stems != first.stems or run.classes != first.classes:
            raise ConfusionError(f"{name} and {names[0]} were evaluated on different test images or classes "
                                 f"({len(run.stems)} vs {len(first.stems)} images, {len(run.classes)} vs "
                                 f"{len(first.classes)} classes): rerun segmentation on one benchmark")


def values(totals: np.ndarray) -> np.ndarray:
    """Statistics (..., 2 + classes) from summed confusion matrices (..., classes, classes)."""
    totals = np.asarray(totals, np.float64)
    hits = np.diagonal(totals, axis1=-2, axis2=-1)
    union = totals.sum(axis=-1) + totals.sum(axis=-2) - hits  # TP + FN + FP
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = hits / union  # 0 / 0: a class neither present nor predicted
        accuracy = hits.sum(axis=-1) / totals.sum(axis=(-2, -1))
    present = ~np.isnan(iou)
    counted = present.sum(axis=-1)
    miou = np.where(counted > 0, np.where(present, iou, 0.0).sum(axis=-1) / np.maximum(counted, 1), np.nan)
    return np.concatenate([miou[..., None], accuracy[..., None], iou], axis=-1)


def point_values(seeds: list[Confusions]) -> np.ndarray:
    """Statistics (seeds, 2 + classes) on the full test set, one row per seed."""
    return np.stack([values(run.matrices.sum(axis=0)) for run in seeds])


def replicate_values(seeds: list[Confusions], draws: Draws) -> np.ndarray:
    """Statistics (replicates, seeds, 2 + classes) on each replicate's images, per seed (not yet averaged)."""
    return np.stack([values(_weighted_totals(draws.images, run)) for run in seeds], axis=1)


def _weighted_totals(weights: np.ndarray, run: Confusions) -> np.ndarray:
    """(rows, classes, classes): per row of ``weights`` (rows, images), the weighted sum of the images' matrices."""
    n, c = len(run.stems), len(run.classes)
    return (weights @ run.matrices.reshape(n, c * c).astype(np.float64)).reshape(-1, c, c)


def permuted_deltas(a: list[Confusions], b: list[Confusions], permutations: int,
                    rng: np.random.Generator) -> np.ndarray:
    """mIoU differences (permutations,) of mean-over-seeds A minus B with A's and B's matrices swapped on
    a random half of the images, independently per seed."""
    total = np.zeros(permutations)
    for run_a, run_b in zip(a, b):
        swap = (rng.random((permutations, len(run_a.stems))) < 0.5).astype(np.float64)
        moved = _weighted_totals(swap, _difference(run_b, run_a))  # what the swapped images move from A to B
        a_total, b_total = run_a.matrices.sum(axis=0), run_b.matrices.sum(axis=0)
        total += values(a_total + moved)[:, 0] - values(b_total - moved)[:, 0]
    return total / len(a)


def _difference(b: Confusions, a: Confusions) -> Confusions:
    return Confusions(a.stems, a.classes, b.matrices - a.matrices)
