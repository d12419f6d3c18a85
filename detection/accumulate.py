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
def _class_ap(slot, codes, scored, start, stop, weights, positives, out, precision, reached):
    """AP of detections ``start:stop`` (one class, in score order) for every group at once: detection ``d``
    weighs ``weights[slot[d], g]`` in group ``g``; ``positives`` (G,) are the groups' ground-truth counts;
    writes ``out`` (G, T). ``scored[d]``: a true positive or ignored at some threshold (else a false positive
    everywhere). ``precision`` and ``reached`` (G, T, true positives at most) are work space."""
    n_groups, n_thr = weights.shape[1], codes.shape[1]
    seen = np.zeros(n_groups)  # weight of every detection so far: false positives = seen - tp - ignored
    tp = np.zeros((n_groups, n_thr))
    ignored = np.zeros((n_groups, n_thr))
    count = np.zeros((n_groups, n_thr), np.int64)
    for d in range(start, stop):
        row = slot[d]
        for g in range(n_groups):
            seen[g] += weights[row, g]  # no branch on the weight: most detections are false positives
        if not scored[d]:
            continue
        for g in range(n_groups):
            w = weights[row, g]
            if w == 0.0 or positives[g] <= 0.0:  # (a drawn true positive implies drawn ground truth)
                continue
            for t in range(n_thr):
                code = codes[d, t]
                if code == 1:
                    tp[g, t] += w
                    k = count[g, t]
                    reached[g, t, k] = _points_reached(tp[g, t] / positives[g])
                    precision[g, t, k] = tp[g, t] / ((seen[g] - tp[g, t] - ignored[g, t]) + tp[g, t] + EPS)
                    count[g, t] = k + 1
                elif code == -1:
                    ignored[g, t] += w
    for g in range(n_groups):
        for t in range(n_thr):
            if positives[g] <= 0.0:
                out[g, t] = np.nan
                continue
            total = 0.0
            envelope = 0.0
            for k in range(count[g, t] - 1, -1, -1):  # each recall point: the envelope at the first TP reaching it
                if precision[g, t, k] > envelope:
                    envelope = precision[g, t, k]
                before = reached[g, t, k - 1] if k > 0 else 0
                total += envelope * (reached[g, t, k] - before)
            out[g, t] = total / RECALL_POINTS.size


@numba.njit(parallel=True, cache=True, nogil=True)
def _average_precision(slot, codes, scored, starts, stops, weights, positives, most_true):
    """AP (weightings, groups, classes, T) for ``weights`` (weightings, slots, groups) and ``positives``
    (weightings, groups, classes); class ``c`` is detections ``starts[c]:stops[c]``. ``most_true``: the
    largest number of true positives of one class at one threshold (the work space's size)."""
    n_rep, _, n_groups = weights.shape
    n_classes = starts.size
    n_thr = codes.shape[1]
    out = np.empty((n_rep, n_classes, n_groups, n_thr))
    for r in numba.prange(n_rep):
        precision = np.empty((n_groups, n_thr, most_true))
        reached = np.empty((n_groups, n_thr, most_true), np.int64)
        for c in range(n_classes):
            _class_ap(slot, codes, scored, starts[c], stops[c], weights[r], positives[r, :, c], out[r, c],
                      precision, reached)
    return out.transpose(0, 2, 1, 3)


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
    bounds = np.asarray(bounds, np.int64)
    true = np.concatenate([np.zeros((1, codes.shape[1]), np.int64), np.cumsum(codes == 1, axis=0)])
    most_true = int((true[bounds[1:]] - true[bounds[:-1]]).max(initial=0))
    # detections after a class's last true positive or ignored one change no precision that AP reads
    last_scored = np.concatenate([[0], np.cumsum(scored)])
    stops = np.array([start + np.searchsorted(last_scored[start + 1:stop + 1], last_scored[stop], side="left") + 1
                      if last_scored[stop] > last_scored[start] else start
                      for start, stop in zip(bounds[:-1], bounds[1:])], np.int64)
    return _average_precision(np.ascontiguousarray(slot, np.int32), codes, scored, bounds[:-1].copy(), stops,
                              np.ascontiguousarray(weights, np.float64), np.ascontiguousarray(positives, np.float64),
                              most_true)


def mean_ap(ap: np.ndarray) -> np.ndarray:
    """Mean over classes (axis -2) of the classes that have ground truth; NaN when none has."""
    valid = ~np.isnan(ap)
    counted = valid.sum(axis=-2)
    total = np.where(valid, ap, 0.0).sum(axis=-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counted > 0, total / np.maximum(counted, 1), np.nan)
