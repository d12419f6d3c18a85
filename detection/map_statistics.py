"""Intervals and paired tests of mAP from per-image matches (``../shared/STATISTICS.md``).

A detector run is one method trained with one seed; a method has one run per seed, the same seeds for
every method, all evaluated on the same test images.

- **Statistics**: mAP@50, mAP@50:95 and AP@50 per class (:func:`statistic_names`).
- **Bootstrap** (:class:`fusionbench.stats.Draws`): each replicate draws the test images with replacement
  (an image drawn twice counts twice) and the seed indices with replacement; its value is the mean over
  the drawn seeds of the statistic on the drawn images. Every method uses the same draws, so the difference of two
  methods' replicates is the paired bootstrap of their difference.
- **Permutation test**: under "A and B are exchangeable", each permutation swaps A's and B's detections
  on a random subset of images (independently per seed) and recomputes the mean-over-seeds difference.
"""
from __future__ import annotations

import numpy as np

from detection.accumulate import average_precision, average_precision_groups, mean_ap
from detection.coco_eval import CocoError
from detection.matches import Matches
from fusionbench.stats import Draws, over_drawn_seeds  # noqa: F401  (re-exported: shared by every task)

MAP50, MAP50_95 = "map50", "map50_95"


def statistic_names(classes: tuple[str, ...] | list[str]) -> list[str]:
    """Column names of the statistics: mAP@50, mAP@50:95, then ``ap50/<class>`` per class."""
    return [MAP50, MAP50_95, *(f"ap50/{name}" for name in classes)]


def check_same_test_set(runs: dict[str, Matches]) -> None:
    """Every run must hold the same test images and classes, in the same order."""
    names = list(runs)
    first = runs[names[0]]
    for name in names[1:]:
        run = runs[name]
        if run.images != first.images or run.classes != first.classes:
            raise CocoError(f"{name} and {names[0]} were evaluated on different test images or classes "
                            f"({len(run.images)} vs {len(first.images)} images): rerun detection on one benchmark")


def values(ap: np.ndarray) -> np.ndarray:
    """Statistics (..., 2 + classes) from AP (..., classes, T): mAP@50, mAP@50:95, AP@50 per class."""
    per_threshold = mean_ap(ap)  # (..., T)
    with np.errstate(invalid="ignore"):
        map50_95 = per_threshold.mean(axis=-1)
    return np.concatenate([per_threshold[..., :1], map50_95[..., None], ap[..., 0]], axis=-1)


def point_values(seeds: list[Matches]) -> np.ndarray:
    """Statistics (seeds, 2 + classes) on the full test set, one row per seed."""
    ones = np.ones((1, len(seeds[0].images)))
    return np.stack([values(average_precision(m, ones))[0] for m in seeds])


def replicate_values(seeds: list[Matches], draws: Draws) -> np.ndarray:
    """Statistics (replicates, seeds, 2 + classes) on each replicate's images, per seed (not yet averaged)."""
    return np.stack([values(average_precision(m, draws.images)) for m in seeds], axis=1)


def permuted_deltas(a: list[Matches], b: list[Matches], permutations: int, rng: np.random.Generator) -> np.ndarray:
    """mAP@50 differences (permutations,) of mean-over-seeds A minus B with A's and B's detections swapped
    on a random half of the images, independently per seed."""
    n_images = len(a[0].images)
    total = np.zeros(permutations)
    for run_a, run_b in zip(a, b):
        swap = rng.random((permutations, n_images)) < 0.5
        slot, codes, bounds = _merged(run_a, run_b)
        keep_a, keep_b = (~swap).astype(np.float64), swap.astype(np.float64)
        weights = np.empty((permutations, 2 * n_images, 2))
        weights[:, :n_images, 0], weights[:, n_images:, 0] = keep_a, keep_b  # group 0: A' (A where not swapped)
        weights[:, :n_images, 1], weights[:, n_images:, 1] = keep_b, keep_a  # group 1: B'
        positives = np.broadcast_to(run_a.gt_counts.sum(axis=0, dtype=np.float64), (permutations, 2, len(run_a.classes)))
        ap = average_precision_groups(slot, codes, bounds, weights, positives)[..., 0]  # (P, 2, classes)
        per_group = mean_ap(ap[..., None])[..., 0]
        total += per_group[:, 0] - per_group[:, 1]
    return total / len(a)


def _merged(a: Matches, b: Matches) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A's and B's detections per class in one score order (stable: A before B on ties), with slots
    image (A) and images + image (B), and the IoU 0.5 codes."""
    n_images = len(a.images)
    slot = np.concatenate([a.image, b.image + n_images]).astype(np.int32)
    klass = np.concatenate([a.klass, b.klass])
    score = np.concatenate([a.score, b.score])
    codes = np.concatenate([a.codes[:, :1], b.codes[:, :1]])
    rank = np.concatenate([np.arange(len(a.score)), len(a.score) + np.arange(len(b.score))])
    order = np.lexsort((rank, -score, klass))
    bounds = np.searchsorted(klass[order], np.arange(len(a.classes) + 1), side="left")
    return slot[order], codes[order], bounds
