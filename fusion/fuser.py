"""The typed calls of fusers, checked with ``isinstance`` (``runtime_checkable`` protocols).

Every fuser is a :class:`Fuser`: ``fuser(ir, vi) -> fused`` with ``ir`` (H, W) float32 in [0, 1],
``vi`` (H, W, 3) RGB float32 in [0, 1] or (H, W) grey (the conventions of :mod:`fusionbench.images`) and
``fused`` (H, W, 3) uint8 RGB of the same size. Learned fusers are :class:`BatchFuser` too (many pairs
per forward pass on an accelerator); the importer of published results is a :class:`PairFuser`,
keyed by the pair instead of its images.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Fuser(Protocol):
    def __call__(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray: ...


@runtime_checkable
class BatchFuser(Protocol):
    def fuse_batch(self, pairs: Iterable[tuple[Any, Any]]) -> list[np.ndarray]:
        """Pairs -> fused images in the same order."""
        ...


@runtime_checkable
class PairFuser(Protocol):
    def fuse_pair(self, pair: Any) -> np.ndarray:
        """The fused image of a benchmark pair (anything with ``stem``, ``vi``, ``width``, ``height``)."""
        ...

    def source(self, stem: str) -> Path | None:
        """The file the result for ``stem`` depends on besides the pair's images."""
        ...
