"""COCO AP from per-image matches, for many weightings of the images at once (bootstrap, permutations).

A weighting gives every detection a weight per group: the number of times its image was drawn (an image
drawn twice counts twice: its detections and its ground truth), or 0/1 for which method's detections a
permutation assigns to a group. AP is COCOeval's accumulation with weighted counts: detections by
descending score, cumulative true and false positives, precision made non-increasing from the right,
read at the 101 recall points 0:0.01:1 (the first detection reaching each recall). A class without
ground truth under a weighting has no AP (NaN), as COCOeval leaves out a -1.

Precision only rises at a true positive, so the envelope is the running maximum over true-positive points
alone and each recall point takes the envelope of the true positive that first reaches it: one pass over
the detections per weighting (numba, parallel over weightings), no COCOeval call per replicate.
"""
from __future__ import annotations

import numba
import numpy as np

from detection.matches import Matches

RECALL_POINTS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)  # COCOeval's recThrs
EPS = np.spacing(1)  # COCOeval's guard in tp / (tp + fp + eps)


@numba.njit(cache=True, nogil=True)
def _points_reached(recall):
    """How many of COCOeval's recall points are <= ``recall`` (exact: compared with the same floats)."""
    j = min(int(recall * 100.0), RECALL_POINTS.size - 1)
    while j + 1 < RECALL_POINTS.size and RECALL_POINTS[j + 1] <= recall:
        j += 1
    while j >= 0 and RECALL_POINTS[j] > recall:
        j -= 1
    return j + 1


@numba.njit(cache=True, nogil=True)
def _class_ap(slot, codes, scored, start, end, weights, group, positives, out, precision, reached):
    """AP of detections ``start:end`` (one class) for one group: ``weights[slot[d], group]`` per detection;
    ``positives`` ground-truth count of the weighting; writes ``out`` (T,). ``scored[d]``: the detection is
    a true positive or ignored at some threshold (a false positive everywhere else: counted as the rest).
    ``precision`` and ``reached`` (T, true positives at most) are work space."""
    n_thr = codes.shape[1]
    if positives <= 0.0:
        out[:] = np.nan
        return
    seen = 0.0  # weight of every detection so far: false positives = seen - true positives - ignored
    tp = np.zeros(n_thr)
    ignored = np.zeros(n_thr)
    count = np.zeros(n_thr, np.int64)
    for d in range(start, end):
        w = weights[slot[d], group]
        seen += w  # no branch on w: most detections are false positives, and a branch here mispredicts
        if not scored[d] or w == 0.0:
            continue
        for t in range(n_thr):
            code = codes[d, t]
            if code == 1:
                tp[t] += w
                k = count[t]
                reached[t, k] = _points_reached(tp[t] / positives)
                precision[t, k] = tp[t] / ((seen - tp[t] - ignored[t]) + tp[t] + EPS)
                count[t] = k + 1
            elif code == -1:
                ignored[t] += w
    for t in range(n_thr):
        total = 0.0
        envelope = 0.0
        for k in range(count[t] - 1, -1, -1):  # each recall point takes the envelope of the first TP reaching it
            if precision[t, k] > envelope:
                envelope = precision[t, k]
            before = reached[t, k - 1] if k > 0 else 0
            total += envelope * (reached[t, k] - before)
        out[t] = total / RECALL_POINTS.size


@numba.njit(parallel=True, cache=True, nogil=True)
def _average_precision(slot, codes, scored, bounds, weights, positives, most_true):
    """AP (weightings, groups, classes, T) for ``weights`` (weightings, slots, groups) and
    ``positives`` (weightings, groups, classes) ground-truth counts; ``most_true``: the largest number of
    true positives of one class at one threshold (the work space's size)."""
    n_rep, _, n_groups = weights.shape
    n_classes = bounds.size - 1
    n_thr = codes.shape[1]
    out = np.empty((n_rep, n_groups, n_classes, n_thr))
    for r in numba.prange(n_rep):
        precision = np.empty((n_thr, most_true))
        reached = np.empty((n_thr, most_true), np.int64)
        w = weights[r]
        for g in range(n_groups):
            for c in range(n_classes):
                _class_ap(slot, codes, scored, bounds[c], bounds[c + 1], w, g, positives[r, g, c], out[r, g, c],
                          precision, reached)
    return out


def average_precision(matches: Matches, image_weights: np.ndarray, thresholds: slice = slice(None)) -> np.ndarray:
    """AP per (weighting, class, IoU threshold) for ``image_weights`` (weightings, images): counts of each
    test image (all ones: the test set itself). NaN where a class has no ground truth in the weighting."""
    weights = np.asarray(image_weights, np.float64)[:, :, None]
    positives = (weights[:, :, 0] @ matches.gt_counts.astype(np.float64))[:, None, :]
    return average_precision_groups(matches.image, matches.codes[:, thresholds], matches.class_bounds(),
                                    weights, positives)[:, 0]


def average_precision_groups(slot: np.ndarray, codes: np.ndarray, bounds: np.ndarray, weights: np.ndarray,
                             positives: np.ndarray) -> np.ndarray:
    """The general form: detection ``d`` has weight ``weights[r, slot[d], g]`` in group ``g`` of weighting
    ``r``; ``positives`` (weightings, groups, classes) are the ground-truth counts; ``bounds`` the class
    offsets. Returns AP (weightings, groups, classes, T). The permutation test's slots are (method, image)."""
    codes = np.ascontiguousarray(codes, np.int8)
    scored = (codes != 0).any(axis=1)
    bounds = np.ascontiguousarray(bounds, np.int64)
    true = np.concatenate([np.zeros((1, codes.shape[1]), np.int64), np.cumsum(codes == 1, axis=0)])
    most_true = int((true[bounds[1:]] - true[bounds[:-1]]).max(initial=0))
    return _average_precision(np.ascontiguousarray(slot, np.int32), codes, scored, bounds,
                              np.ascontiguousarray(weights, np.float64), np.ascontiguousarray(positives, np.float64),
                              most_true)


def mean_ap(ap: np.ndarray) -> np.ndarray:
    """Mean over classes (axis -2) of the classes that have ground truth; NaN when none has."""
    valid = ~np.isnan(ap)
    counted = valid.sum(axis=-2)
    total = np.where(valid, ap, 0.0).sum(axis=-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counted > 0, total / np.maximum(counted, 1), np.nan)
