"""Generic pieces of the paired comparisons: the bootstrap draws every task shares and their mean over
the drawn seeds, percentile intervals, permutation p-values, Holm's adjustment and the Wilcoxon
signed-rank test on per-image values.

Neutral (numpy and scipy only), so every task's statistics and the compare stage share one definition
of each; ``../shared/STATISTICS.md`` is the design.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TIE_TOLERANCE = 1e-12  # a permuted statistic this close to the observed one counts as reaching it


@dataclass(frozen=True)
class Draws:
    """Bootstrap draws shared by every method: image counts (replicates, images), seed indices (replicates, seeds)."""

    images: np.ndarray
    seeds: np.ndarray

    @classmethod
    def make(cls, n_images: int, n_seeds: int, replicates: int, seed: int) -> "Draws":
        """Images first, then seeds, from one generator: the image draws do not depend on the seed count."""
        rng = np.random.default_rng(seed)
        picked = rng.integers(0, n_images, size=(replicates, n_images))
        counts = np.zeros((replicates, n_images), np.float64)
        np.add.at(counts, (np.arange(replicates)[:, None], picked), 1.0)
        return cls(counts, rng.integers(0, n_seeds, size=(replicates, n_seeds)))


def over_drawn_seeds(replicates: np.ndarray, draws: Draws) -> np.ndarray:
    """(replicates, statistics) from (replicates, seeds, statistics): the mean over each replicate's drawn
    seeds; NaN where a drawn seed's statistic is undefined on the drawn images (e.g. a class without
    ground truth there)."""
    picked = np.take_along_axis(replicates, draws.seeds[:, :, None], axis=1)
    return picked.mean(axis=1)


def percentile_interval(samples: np.ndarray, level: float = 0.95, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The percentile bootstrap interval (Efron) over ``axis``; NaN replicates (a statistic undefined in
    that draw, e.g. a class without ground truth) are left out."""
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.nanpercentile(np.asarray(samples, float), [tail, 100.0 - tail], axis=axis)
    return low, high


def permutation_p_value(observed: float, permuted: np.ndarray) -> float:
    """Two-sided p = (1 + #{|permuted| >= |observed|}) / (1 + N): never 0, 1 when nothing differs."""
    permuted = np.asarray(permuted, float)
    reached = np.count_nonzero(np.abs(permuted) >= abs(observed) - TIE_TOLERANCE)
    return float((1 + reached) / (1 + permuted.size))


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment of one family of p-values (same order as given; NaN stays NaN).

    The k-th smallest of m p-values becomes max over j <= k of (m - j + 1) p_(j), capped at 1.
    """
    p = np.asarray(p_values, float)
    adjusted = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    order = valid[np.argsort(p[valid], kind="mergesort")]
    m = order.size
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted


@dataclass(frozen=True)
class PairedTest:
    """Mean of a minus b over the pairs, its percentile bootstrap interval, and the test's p-value."""

    delta: float
    ci_low: float
    ci_high: float
    p: float
    pairs: int


def wilcoxon_paired(a: np.ndarray, b: np.ndarray, rng: np.random.Generator, replicates: int,
                    level: float = 0.95) -> PairedTest:
    """Wilcoxon signed-rank test (scipy, two-sided, zero differences dropped as Wilcoxon did) on per-item
    pairs, with the mean difference and its bootstrap interval over items. All-equal pairs give p = 1."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    keep = ~(np.isnan(a) | np.isnan(b))
    difference = a[keep] - b[keep]
    if difference.size == 0:
        return PairedTest(np.nan, np.nan, np.nan, np.nan, 0)
    draws = rng.integers(0, difference.size, size=(replicates, difference.size))
    low, high = percentile_interval(difference[draws].mean(axis=1), level)
    if np.all(difference == 0):
        p = 1.0
    else:
        from scipy import stats as scipy_stats  # heavy: imported where the test runs

        p = float(scipy_stats.wilcoxon(difference, zero_method="wilcox", alternative="two-sided").pvalue)
    return PairedTest(float(difference.mean()), float(low), float(high), p, int(difference.size))


def mean_interval(values: np.ndarray, rng: np.random.Generator, replicates: int,
                  level: float = 0.95) -> tuple[float, float, float, int]:
    """Mean of per-item values (NaN left out) with its percentile bootstrap interval: (mean, low, high, n)."""
    values = np.asarray(values, float)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return np.nan, np.nan, np.nan, 0
    draws = rng.integers(0, values.size, size=(replicates, values.size))
    low, high = percentile_interval(values[draws].mean(axis=1), level)
    return float(values.mean()), float(low), float(high), int(values.size)
