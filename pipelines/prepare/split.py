"""Train/val/test splits that depend only on the stems, the thumbnails and the seed.

``random``: sort the stems, shuffle them with ``numpy.random.default_rng(seed)``, cut by ratio.
``scene``:  M3FD frames come from videos, so a random split puts near-identical neighbouring
frames on both sides. Consecutive frames (in stem order) whose thumbnails differ by less than a
threshold (mean absolute difference, images in [0, 1]) form one scene, and whole scenes are
assigned to splits. :func:`leakage` counts the test images that have a near-duplicate in train.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist

from fusionbench.benchmark import SPLITS
from pipelines.prepare.problems import PrepareError

STRATEGIES = ("auto", "random", "scene", "file", "official")   # file and official: pipelines.prepare.build


def split_sizes(n: int, ratios: tuple[float, ...]) -> list[int]:
    """Sizes of train/val/test for ``n`` pairs: floors, then the remainder to the largest fractions."""
    if len(ratios) != len(SPLITS) or min(ratios) < 0 or sum(ratios) <= 0:
        raise PrepareError(f"split ratios {list(ratios)}: expected three non-negative numbers (train, val, test)")
    exact = [n * r / sum(ratios) for r in ratios]
    sizes = [int(e) for e in exact]
    by_fraction = sorted(range(len(exact)), key=lambda i: (sizes[i] - exact[i], i))
    for i in by_fraction[: n - sum(sizes)]:
        sizes[i] += 1
    return sizes


def random_split(stems: list[str], ratios: tuple[float, ...], seed: int) -> dict[str, str]:
    """stem -> split, independent of the order the stems are given in."""
    ordered = sorted(stems)
    shuffled = [ordered[i] for i in np.random.default_rng(seed).permutation(len(ordered))]
    sizes = split_sizes(len(ordered), ratios)
    bounds = np.cumsum([0, *sizes])
    return {stem: SPLITS[int(np.searchsorted(bounds, i, side="right")) - 1] for i, stem in enumerate(shuffled)}


def group_scenes(thumbnails: np.ndarray, threshold: float) -> list[int]:
    """Scene id of each frame (rows in stem order): a new scene starts where consecutive frames differ."""
    steps = np.abs(np.diff(thumbnails, axis=0)).mean(axis=1) if len(thumbnails) > 1 else np.zeros(0)
    return [0, *np.cumsum(steps >= threshold).tolist()]


def scene_split(stems: list[str], scenes: list[int], ratios: tuple[float, ...], seed: int) -> dict[str, str]:
    """stem -> split, keeping every scene whole: scenes in seeded random order each go to the split
    that is the least filled relative to its target size (so val and test get a scene early even
    when scenes are large compared with them)."""
    targets = split_sizes(len(stems), ratios)
    members: dict[int, list[str]] = {}
    for stem, scene in sorted(zip(stems, scenes)):
        members.setdefault(scene, []).append(stem)
    order = sorted(members)
    filled = [0] * len(SPLITS)
    assignment = {}
    for k in np.random.default_rng(seed).permutation(len(order)):
        group = members[order[k]]
        target = min((i for i in range(len(SPLITS)) if targets[i]), key=lambda i: (filled[i] / targets[i], i))
        filled[target] += len(group)
        assignment.update({stem: SPLITS[target] for stem in group})
    return assignment


def check_not_empty(assignment: dict[str, str], ratios: tuple[float, ...], strategy: str) -> None:
    for split, ratio in zip(SPLITS, ratios):
        if ratio > 0 and split not in assignment.values():
            raise PrepareError(f"the {strategy} split left {split} empty ({len(assignment)} pairs, "
                               f"ratios {list(ratios)}): add pairs"
                               + (" or lower data.split.scene_threshold" if strategy == "scene" else ""))


def leakage(assignment: dict[str, str], stems: list[str], thumbnails: np.ndarray, threshold: float) -> int:
    """Number of test images whose nearest train image (by thumbnail) is within ``threshold``."""
    rows = {stem: i for i, stem in enumerate(stems)}
    test = [rows[s] for s in sorted(assignment) if assignment[s] == "test"]
    train = [rows[s] for s in sorted(assignment) if assignment[s] == "train"]
    if not test or not train:
        return 0
    nearest = cdist(thumbnails[test], thumbnails[train], "cityblock").min(axis=1) / thumbnails.shape[1]
    return int((nearest < threshold).sum())
