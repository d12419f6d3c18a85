"""mIoU, per-class IoU and pixel accuracy from per-image confusion matrices, against an independent
per-pixel count; their bootstrap intervals and the paired permutation test against synthetic
segmenters whose population values are known (../shared/STATISTICS.md)."""
from __future__ import annotations

import numpy as np
import pytest

from fusionbench.stats import Draws, over_drawn_seeds, percentile_interval, permutation_p_value
from segmentation.confusion import ConfusionError, Confusions, confusion, load, save
from segmentation.statistics import (
    check_same_test_set,
    permuted_deltas,
    point_values,
    replicate_values,
    statistic_names,
)

CLASSES = tuple(f"c{k}" for k in range(9))


def scenes(segmentation_scene, n_images: int, seed: int):
    rng = np.random.default_rng(seed)
    truths, predictions = [], []
    for _ in range(n_images):
        _, truth, prediction = segmentation_scene(rng)
        truth[truth == 7] = 1  # class 7: neither in the ground truth nor predicted -> no IoU
        prediction[prediction == 7] = 1
        truth[truth == 8] = 2  # class 8: predicted, never true -> IoU 0
        truths.append(truth)
        predictions.append(prediction)
    return predictions, truths


def run_of(predictions, truths, n_classes: int = 9) -> Confusions:
    matrices = np.stack([confusion(p, t, n_classes) for p, t in zip(predictions, truths)])
    return Confusions(tuple(f"img{i:03d}" for i in range(len(truths))), CLASSES[:n_classes], matrices)


def test_statistics_equal_a_pixel_by_pixel_count(segmentation_scene, pixel_loop):
    predictions, truths = scenes(segmentation_scene, 40, seed=0)
    miou, accuracy, iou = pixel_loop(predictions, truths, 9)
    (point,) = point_values([run_of(predictions, truths)])
    assert statistic_names(CLASSES)[:3] == ["miou", "pixel_accuracy", "iou/c0"]
    assert point[0] == pytest.approx(miou, abs=1e-12) and point[1] == pytest.approx(accuracy, abs=1e-12)
    assert np.allclose(point[2:], iou, atol=1e-12, equal_nan=True)
    assert np.isnan(point[2 + 7]) and point[2 + 8] == 0.0  # the absent class is left out, the false one is 0
    assert 0.2 < miou < 0.95 and 0.5 < accuracy < 0.99  # a case where errors matter, not a trivial 0 or 1
    assert any(255 in t for t in truths)  # and ignored pixels are present


def test_confusion_rows_are_truth_and_ignore_is_skipped():
    truth = np.array([[0, 1, 1, 255]])
    prediction = np.array([[0, 0, 1, 1]])
    assert confusion(prediction, truth, 2).tolist() == [[1, 0], [1, 1]]
    with pytest.raises(ConfusionError, match="class index 3"):
        confusion(np.array([[3]]), np.array([[0]]), 2)
    with pytest.raises(ConfusionError, match=r"shape \(1, 2\) for a ground truth of shape \(1, 1\)"):
        confusion(np.zeros((1, 2)), np.zeros((1, 1)), 2)


def test_duplicated_images_count_twice(segmentation_scene, pixel_loop):
    """A replicate drawing images 0..9 twice scores what the pixel count gives on a set holding them twice."""
    predictions, truths = scenes(segmentation_scene, 30, seed=1)
    run = run_of(predictions, truths)
    weights = np.ones((1, 30))
    weights[0, :10] = 2
    (replicate,) = replicate_values([run], Draws(weights, np.zeros((1, 1), np.int64)))[:, 0]
    miou, accuracy, iou = pixel_loop(predictions + predictions[:10], truths + truths[:10], 9)
    assert replicate[0] == pytest.approx(miou, abs=1e-12) and replicate[1] == pytest.approx(accuracy, abs=1e-12)
    assert np.allclose(replicate[2:], iou, atol=1e-12, equal_nan=True)
    assert replicate[0] != pytest.approx(point_values([run])[0, 0], abs=1e-6)


def test_confusion_file_round_trip_size_and_damage(tmp_path, segmentation_scene):
    predictions, truths = scenes(segmentation_scene, 12, seed=2)
    run = run_of(predictions, truths)
    save(tmp_path / "confusion.npz", run)
    loaded = load(tmp_path / "confusion.npz")
    assert loaded.stems == run.stems and loaded.classes == run.classes
    assert loaded.matrices.dtype == np.int64 and np.array_equal(loaded.matrices, run.matrices)
    data = (tmp_path / "confusion.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ConfusionError, match=r"cut\.npz: not a readable confusion\.npz"):
        load(tmp_path / "cut.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ConfusionError, match=r"other\.npz: not a readable confusion\.npz \(KeyError"):
        load(tmp_path / "other.npz")
    with pytest.raises(ConfusionError, match=r"absent\.npz: confusion matrices not found"):
        load(tmp_path / "absent.npz")


def test_evidence_at_msrs_size_is_small(tmp_path):
    """361 test images of 480x640 pixels, 9 classes: well under 1 MB."""
    rng = np.random.default_rng(3)
    matrices = rng.multinomial(480 * 640, np.full(81, 1 / 81), size=361).reshape(361, 9, 9).astype(np.int64)
    save(tmp_path / "confusion.npz", Confusions(tuple(f"{i:05d}N" for i in range(361)), CLASSES, matrices))
    assert (tmp_path / "confusion.npz").stat().st_size < 1_000_000


def test_different_test_sets_are_refused(segmentation_scene):
    predictions, truths = scenes(segmentation_scene, 6, seed=4)
    run = run_of(predictions, truths)
    fewer = Confusions(run.stems[:5], run.classes, run.matrices[:5])
    with pytest.raises(ConfusionError, match="b and a were evaluated on different test images or classes "
                                             r"\(5 vs 6 images"):
        check_same_test_set({"a": run, "b": fewer})


# --- synthetic segmenters with a known generating process ---------------------------------------------------

PRESENCE = np.array([1.0, 0.6, 0.4, 0.25])
AREA = np.array([2000.0, 300.0, 150.0, 80.0])


def ground_truth(rng: np.random.Generator, n_images: int) -> np.ndarray:
    """Pixels per image and class (images, 4): each class present with its probability, Poisson area."""
    return ((rng.random((n_images, 4)) < PRESENCE) * rng.poisson(AREA, size=(n_images, 4))).astype(np.int64)


def segmenter(rng: np.random.Generator, pixels: np.ndarray, quality=(6.0, 2.0)) -> np.ndarray:
    """Confusion matrices (images, 4, 4) of a segmenter of per-image quality q ~ Beta(``quality``): each
    pixel right with probability q; an object's wrong pixels go to the background, the background's to
    one object class per image."""
    n = pixels.shape[0]
    q = rng.beta(*quality, size=(n, 1))
    correct = rng.binomial(pixels, q)
    matrices = np.zeros((n, 4, 4), np.int64)
    rows = np.arange(n)
    for c in range(4):
        matrices[rows, c, c] = correct[:, c]
        target = np.zeros(n, np.int64) if c else rng.integers(1, 4, n)
        matrices[rows, c, target] += pixels[:, c] - correct[:, c]
    return matrices


def as_run(matrices: np.ndarray) -> Confusions:
    return Confusions(tuple(str(i) for i in range(len(matrices))), CLASSES[:4], matrices)


def test_bootstrap_interval_covers_the_population_miou():
    """The 95% image-bootstrap interval of a 300-image test set covers the population mIoU (a ratio of
    expected counts, from 400,000 images) in 90-99% of repeated test sets."""
    rng = np.random.default_rng(5)
    population = sum(segmenter(rng, ground_truth(rng, 100_000)).sum(axis=0) for _ in range(4))
    (truth_value,) = point_values([as_run(population[None])])[:, 0]
    covered = []
    for k in range(150):
        run = as_run(segmenter(rng, ground_truth(rng, 300)))
        draws = Draws.make(300, 1, 400, seed=k)
        low, high = percentile_interval(over_drawn_seeds(replicate_values([run], draws), draws)[:, 0])
        covered.append(low <= truth_value <= high)
    assert 0.90 <= np.mean(covered) <= 0.99


def paired_test(a: list[Confusions], b: list[Confusions], seed: int, permutations: int = 999):
    delta = point_values(a)[:, 0].mean() - point_values(b)[:, 0].mean()
    p = permutation_p_value(delta, permuted_deltas(a, b, permutations, np.random.default_rng(seed)))
    draws = Draws.make(len(a[0].stems), len(a), 500, seed)
    difference = over_drawn_seeds(replicate_values(a, draws), draws) - over_drawn_seeds(replicate_values(b, draws),
                                                                                         draws)
    return delta, p, percentile_interval(difference[:, 0])


def test_identical_methods_differ_by_nothing():
    rng = np.random.default_rng(6)
    pixels = ground_truth(rng, 200)
    runs = [as_run(segmenter(rng, pixels)) for _ in range(3)]
    delta, p, (low, high) = paired_test(runs, runs, seed=0)
    assert delta == 0.0 and p == 1.0 and low == 0.0 == high


def test_a_strictly_better_method_is_significant():
    """B is A with a tenth of every image's errors corrected, for every seed."""
    rng = np.random.default_rng(7)
    pixels = ground_truth(rng, 200)
    a = [as_run(segmenter(rng, pixels)) for _ in range(3)]
    b = []
    for run in a:
        fixed = run.matrices.copy()
        errors = fixed * (1 - np.eye(4, dtype=np.int64))
        moved = errors // 10
        fixed -= moved
        fixed[:, np.arange(4), np.arange(4)] += moved.sum(axis=2)
        b.append(as_run(fixed))
    delta, p, (low, high) = paired_test(b, a, seed=1)
    assert delta > 0 and p < 0.01 and low > 0


def test_permutation_test_false_positive_rate_is_about_alpha():
    """Two exchangeable segmenters on the same ground truth: p < 0.05 in about 5% of 300 trials."""
    rng = np.random.default_rng(8)
    rejected = []
    for trial in range(300):
        pixels = ground_truth(rng, 60)
        a, b = as_run(segmenter(rng, pixels)), as_run(segmenter(rng, pixels))
        delta = point_values([a])[0, 0] - point_values([b])[0, 0]
        permuted = permuted_deltas([a], [b], 199, np.random.default_rng(trial))
        rejected.append(permutation_p_value(delta, permuted) < 0.05)
    assert 0.02 <= np.mean(rejected) <= 0.09
