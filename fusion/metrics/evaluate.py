"""Score one (fused, IR, VI) triple, from arrays or files, under one convention."""
from __future__ import annotations

import math
import os

import numpy as np

from fusion.metrics.conventions import Convention, ConventionError, get_convention
from fusion.metrics.images import grey_triples, read_image
from fusion.metrics.registry import REGISTRY
from fusionbench.images import ImageError


def metric_names(convention: str | Convention, metrics: list[str] | None = None) -> tuple[str, ...]:
    """``metrics`` (default: all of the convention's), refused if one does not exist in it."""
    c = get_convention(convention)
    if metrics is None:
        return c.metrics
    unknown = [name for name in metrics if name not in c.metrics]
    if unknown:
        raise ConventionError(f"metric(s) {', '.join(unknown)} do not exist in the {c.name!r} convention "
                              f"(it has {', '.join(c.metrics)})")
    return tuple(metrics)


def _score(name: str, triples: list[tuple[np.ndarray, np.ndarray, np.ndarray]], c: Convention) -> float:
    """One metric: mean over the channel triples; VIFB's SF lays colour channels side by side."""
    info = REGISTRY[name]
    if min(triples[0][0].shape) < info.min_size:
        return math.nan
    if name == "SF" and len(triples) > 1 and c.sf_normalisation == "per_pixel":
        wide = np.concatenate([f for f, _, _ in triples], axis=1)
        return info.function(wide, wide, wide, c)
    return float(np.mean([info.function(f, ir, vi, c) for f, ir, vi in triples]))


def evaluate(fused: np.ndarray, ir: np.ndarray, vi: np.ndarray, convention: str | Convention = "cddfuse",
             metrics: list[str] | None = None) -> dict[str, float]:
    """Metrics of one triple of (H, W) or (H, W, 3) RGB images in [0, 255] (as read from 8-bit files).

    Inputs outside what the convention expects are refused (:class:`MetricInputError`); a metric
    undefined for the input (see :data:`REGISTRY`: ``degenerate``, ``min_size``) is NaN.
    """
    c = get_convention(convention)
    names = metric_names(c, metrics)
    triples = grey_triples(fused, ir, vi, c)
    with np.errstate(divide="ignore", invalid="ignore"):
        return {name: _score(name, triples, c) for name in names}


def evaluate_files(fused: str | os.PathLike, ir: str | os.PathLike, vi: str | os.PathLike,
                   convention: str | Convention = "cddfuse", metrics: list[str] | None = None) -> dict[str, float]:
    """:func:`evaluate` on three image files read as the convention's toolkit reads them; a size
    mismatch is an error naming the fused file."""
    c = get_convention(convention)
    images = [read_image(path, c) for path in (fused, ir, vi)]
    if not images[0].shape[:2] == images[1].shape[:2] == images[2].shape[:2]:
        raise ImageError(f"{fused}: size {images[0].shape[1::-1]} differs from its sources "
                         f"(IR {images[1].shape[1::-1]}, VI {images[2].shape[1::-1]})")
    return evaluate(*images, convention=c, metrics=metrics)
