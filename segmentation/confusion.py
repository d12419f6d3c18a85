"""Per-image confusion matrices: the evidence every segmentation statistic is computed from.

A pixel's contribution to IoU and accuracy does not depend on which other images are evaluated, so
one (classes x classes) count matrix per test image is all that the statistics need: the dataset's
matrix is their sum, a bootstrap replicate's a weighted sum (an image drawn twice counts twice), and a
permutation swaps whole images between two methods. Stored as ``confusion.npz``, one matrix per test
image keyed by its stem, compressed (MSRS's 361 images x 9 classes take a few tens of kB).
"""
from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fusionbench.errors import FusionBenchError
from fusionbench.files import atomic_write_bytes
from segmentation.masks import IGNORE

CLASSES_KEY = "__classes__"


class ConfusionError(FusionBenchError):
    """Confusion matrices that cannot be used (unreadable file, different test sets); the message says which."""


def confusion(pred: np.ndarray, truth: np.ndarray, n_classes: int, ignore: int = IGNORE) -> np.ndarray:
    """(n_classes, n_classes) int64 pixel counts: row = ground-truth class, column = predicted class;
    pixels whose ground truth is ``ignore`` are not counted."""
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape:
        raise ConfusionError(f"prediction of shape {pred.shape} for a ground truth of shape {truth.shape}")
    counted = truth != ignore
    truth, pred = truth[counted].astype(np.int64), pred[counted].astype(np.int64)
    if truth.size and (truth.max() >= n_classes or pred.min() < 0 or pred.max() >= n_classes):
        raise ConfusionError(f"class index {max(int(truth.max()), int(pred.max()))} (or a negative one) outside "
                             f"0..{n_classes - 1}")
    return np.bincount(truth * n_classes + pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


@dataclass(frozen=True)
class Confusions:
    """One segmenter's confusion matrices on a test set: ``matrices[i]`` is image ``stems[i]``'s."""

    stems: tuple[str, ...]
    classes: tuple[str, ...]
    matrices: np.ndarray  # (images, classes, classes) int64

    def __post_init__(self) -> None:
        n, c = len(self.stems), len(self.classes)
        if self.matrices.shape != (n, c, c) or self.matrices.dtype != np.int64:
            raise ConfusionError(f"confusion matrices of shape {self.matrices.shape} ({self.matrices.dtype}) for "
                                 f"{n} images and {c} classes: expected ({n}, {c}, {c}) int64")
        if len(set(self.stems)) != n:
            raise ConfusionError(f"{n - len(set(self.stems))} test image stems occur twice")


def to_bytes(confusions: Confusions) -> bytes:
    """The ``confusion.npz`` content: one matrix per stem (in test-set order), and the class names."""
    if CLASSES_KEY in confusions.stems:
        raise ConfusionError(f"a test image may not be named {CLASSES_KEY!r}")
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{CLASSES_KEY: np.array(confusions.classes, dtype=str)},
                        **dict(zip(confusions.stems, confusions.matrices)))
    return buffer.getvalue()


def save(path: str | os.PathLike, confusions: Confusions) -> None:
    atomic_write_bytes(path, to_bytes(confusions))


def load(path: str | os.PathLike) -> Confusions:
    """Read a ``confusion.npz``; a missing, truncated or foreign file is a :class:`ConfusionError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise ConfusionError(f"{path}: confusion matrices not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            classes = tuple(str(name) for name in data[CLASSES_KEY])
            stems = tuple(key for key in data.files if key != CLASSES_KEY)
            empty = np.zeros((0, len(classes), len(classes)), np.int64)
            matrices = np.stack([data[stem] for stem in stems]) if stems else empty
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise ConfusionError(f"{path}: not a readable confusion.npz ({type(error).__name__}: {error}); "
                             "rerun the segmentation evaluation that writes it") from error
    try:
        return Confusions(stems, classes, matrices.astype(np.int64, casting="same_kind"))
    except (ConfusionError, TypeError) as error:
        raise ConfusionError(f"{path}: {error}") from error
