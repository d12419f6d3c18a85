"""mAP from per-image matches, its bootstrap intervals and the paired permutation test, against
pycocotools and against synthetic detectors whose population values are known (../shared/STATISTICS.md)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from detection.accumulate import average_precision, mean_ap
from detection.coco_eval import evaluate, load_ground_truth
from detection.map_statistics import Draws, over_drawn_seeds, permuted_deltas, point_values, replicate_values
from detection.matches import Matches, load, match, to_bytes
from fusionbench.stats import holm, percentile_interval, permutation_p_value, wilcoxon_paired


def coco_case(rng: np.random.Generator, n_images: int, classes: int = 3, ties: bool = False,
              duplicate: int = 0) -> tuple[dict, list[dict]]:
    """Ground truth with crowd boxes and jittered, misclassified and spurious detections; the first
    ``duplicate`` images are appended again as new images (same boxes, same detections)."""
    images, annotations, detections = [], [], []
    for i in range(n_images):
        images.append({"id": i + 1, "file_name": f"{i}.png", "width": 200, "height": 100})
        for _ in range(rng.integers(0, 5)):
            c = int(rng.integers(0, classes))
            x, y, w, h = rng.uniform(0, 150), rng.uniform(0, 60), *rng.uniform(8, 40, 2)
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": c + 1,
                                "bbox": [x, y, w, h], "area": w * h, "iscrowd": int(rng.random() < 0.08)})
            for _ in range(rng.integers(0, 3)):
                category = c + 1 if rng.random() < 0.8 else int(rng.integers(1, classes + 1))
                detections.append({"image_id": i + 1, "category_id": category, "score": 0.0,
                                   "bbox": [x + rng.normal(0, 3), y + rng.normal(0, 3), w * rng.uniform(0.8, 1.2), h]})
        for _ in range(rng.integers(0, 4)):
            detections.append({"image_id": i + 1, "category_id": int(rng.integers(1, classes + 1)), "score": 0.0,
                               "bbox": [rng.uniform(0, 150), rng.uniform(0, 60), 20.0, 20.0]})
    for d in detections:
        d["score"] = round(float(rng.random()), 2 if ties else 9)
    for j in range(duplicate):
        new_id = n_images + j + 1
        images.append({**images[j], "id": new_id, "file_name": f"copy{j}.png"})
        annotations += [{**a, "id": len(annotations) + k + 1, "image_id": new_id}
                        for k, a in enumerate([a for a in annotations if a["image_id"] == j + 1])]
        detections += [{**d, "image_id": new_id} for d in detections if d["image_id"] == j + 1]
    categories = [{"id": k + 1, "name": f"class{k}"} for k in range(classes)]
    return {"images": images, "annotations": annotations, "categories": categories}, detections


def ground_truth(tmp_path: Path, data: dict, name: str = "gt.json"):
    (tmp_path / name).write_text(json.dumps(data))
    return load_ground_truth(tmp_path / name)


@pytest.mark.parametrize("ties", [False, True])
def test_accumulation_reproduces_pycocotools(tmp_path, ties):
    """mAP@50, mAP@50:95 and AP@50 per class from the matches equal COCOeval's to 1e-12 (crowd boxes,
    a class absent from the ground truth of some images, tied scores in COCOeval's order)."""
    data, detections = coco_case(np.random.default_rng(1), 80, ties=ties)
    gt = ground_truth(tmp_path, data)
    reference = evaluate(gt, detections)
    matched = match(gt, detections)
    (point,) = point_values([matched])
    assert point[0] == pytest.approx(reference.map50, abs=1e-12)
    assert point[1] == pytest.approx(reference.map50_95, abs=1e-12)
    assert point[2:] == pytest.approx([reference.per_class[c] for c in matched.classes], abs=1e-12)
    assert 0.05 < reference.map50 < 0.95  # a case where the curve matters, not a trivial 0 or 1


def test_matches_file_round_trip_and_empty_detections(tmp_path):
    data, detections = coco_case(np.random.default_rng(2), 20)
    gt = ground_truth(tmp_path, data)
    matched = match(gt, detections)
    (tmp_path / "m.npz").write_bytes(to_bytes(matched))
    loaded = load(tmp_path / "m.npz")
    assert loaded.images == matched.images and loaded.classes == matched.classes
    assert np.array_equal(loaded.codes, matched.codes) and np.array_equal(loaded.gt_counts, matched.gt_counts)
    nothing = match(gt, [])
    assert len(nothing.score) == 0 and np.array_equal(nothing.gt_counts, matched.gt_counts)
    assert point_values([nothing])[0, 0] == 0.0 == evaluate(gt, []).map50


def test_duplicated_images_count_twice(tmp_path):
    """A replicate drawing images 0..9 twice scores what pycocotools gives on a test set holding them twice."""
    rng = np.random.default_rng(3)
    data, detections = coco_case(rng, 60, duplicate=10)
    doubled = evaluate(ground_truth(tmp_path, data, "doubled.json"), detections)
    single = {**data, "images": [x for x in data["images"] if x["id"] <= 60],
              "annotations": [x for x in data["annotations"] if x["image_id"] <= 60]}
    gt = ground_truth(tmp_path, single)
    matched = match(gt, [d for d in detections if d["image_id"] <= 60])
    weights = np.ones((1, 60))
    weights[0, :10] = 2
    ap = average_precision(matched, weights)
    assert mean_ap(ap)[0, 0] == pytest.approx(doubled.map50, abs=1e-12)
    assert mean_ap(ap)[0].mean() == pytest.approx(doubled.map50_95, abs=1e-12)
    assert mean_ap(average_precision(matched, np.ones((1, 60))))[0, 0] != pytest.approx(doubled.map50, abs=1e-6)


# --- synthetic detectors with a known generating process ---------------------------------------------------

def synthetic(rng: np.random.Generator, n_images: int, found: float = 0.7, true_score=(4.0, 2.0),
              false_rate: float = 3.0, classes: int = 2) -> Matches:
    """Matches drawn directly: per image and class Poisson(1.5) objects, each found with probability
    ``found`` at a Beta(``true_score``) score; Poisson(``false_rate``) false alarms per image at Beta(2, 4)."""
    return detections_on(rng, rng.poisson(1.5, size=(n_images, classes)).astype(np.int32), found, true_score,
                         false_rate)


def detections_on(rng: np.random.Generator, gt: np.ndarray, found: float = 0.7, true_score=(4.0, 2.0),
                  false_rate: float = 3.0) -> Matches:
    """Detections of the synthetic process on ground truth ``gt`` (images, classes): each object found with
    probability ``found`` at a Beta(``true_score``) score, Poisson(``false_rate``) false alarms per image."""
    n_images, classes = gt.shape
    image, klass, score, code = [], [], [], []
    for c in range(classes):
        hits = rng.binomial(gt[:, c], found)
        false = rng.poisson(false_rate / classes, n_images)
        for count, is_true, (a, b) in ((hits, 1, true_score), (false, 0, (2.0, 4.0))):
            owner = np.repeat(np.arange(n_images), count)
            image.append(owner)
            klass.append(np.full(owner.size, c))
            score.append(rng.beta(a, b, owner.size))
            code.append(np.full(owner.size, is_true))
    image, klass, score, code = map(np.concatenate, (image, klass, score, code))
    order = np.lexsort((-score, klass))
    return Matches(tuple(f"{i}" for i in range(n_images)), tuple(f"c{c}" for c in range(classes)), np.array([0.5]),
                   image[order].astype(np.int32), klass[order].astype(np.int16), score[order],
                   code[order, None].astype(np.int8), gt)


def test_interval_coverage_on_synthetic_detectors():
    """The 95% image-bootstrap interval from 300 test images covers the population mAP@50 (from 200,000
    images) in 90-99% of 120 independent test sets."""
    rng = np.random.default_rng(7)
    population = point_values([synthetic(rng, 200_000)])[0, 0]
    covered = 0
    repeats = 120
    for k in range(repeats):
        test_set = synthetic(rng, 300)
        draws = Draws.make(300, 1, 400, seed=k)
        low, high = percentile_interval(over_drawn_seeds(replicate_values([test_set], draws), draws)[:, 0])
        covered += low <= population <= high
    assert 0.90 <= covered / repeats <= 0.99, covered / repeats


def test_two_level_bootstrap_widens_with_seed_variance():
    """Seeds that disagree widen the interval beyond the image bootstrap of their mean."""
    rng = np.random.default_rng(11)
    base = synthetic(rng, 200)
    weaker = Matches(**{**base.__dict__, "score": base.score.copy()})
    weaker.score[base.codes[:, 0] == 1] *= 0.5  # same images, a much worse ranking: another "seed"
    order = np.lexsort((-weaker.score, weaker.klass))
    weaker = Matches(**{**weaker.__dict__, "image": weaker.image[order], "score": weaker.score[order],
                        "codes": weaker.codes[order]})
    draws = Draws.make(200, 2, 500, seed=0)
    one = percentile_interval(over_drawn_seeds(replicate_values([base, base], draws), draws)[:, 0])
    two = percentile_interval(over_drawn_seeds(replicate_values([base, weaker], draws), draws)[:, 0])
    assert two[1] - two[0] > 1.3 * (one[1] - one[0])


def test_identical_methods_give_delta_zero_and_p_one():
    rng = np.random.default_rng(5)
    runs = [synthetic(rng, 100) for _ in range(2)]
    permuted = permuted_deltas(runs, runs, 200, np.random.default_rng(0))
    assert np.all(permuted == 0.0)
    observed = float(point_values(runs)[:, 0].mean() - point_values(runs)[:, 0].mean())
    assert observed == 0.0 and permutation_p_value(observed, permuted) == 1.0


def test_a_dominating_method_is_significant():
    """The same detections with every true positive ranked above every false alarm: better on every
    image, significant at 1000 permutations."""
    rng = np.random.default_rng(6)
    weak = synthetic(rng, 120, found=0.5)
    strong = Matches(**{**weak.__dict__, "score": np.where(weak.codes[:, 0] == 1, 1.0 - 0.01 * rng.random(len(weak.score)),
                                                           weak.score)})
    order = np.lexsort((-strong.score, strong.klass))
    strong = Matches(**{**strong.__dict__, "image": strong.image[order], "score": strong.score[order],
                        "codes": strong.codes[order]})
    observed = float(point_values([strong])[0, 0] - point_values([weak])[0, 0])
    permuted = permuted_deltas([strong], [weak], 1000, np.random.default_rng(1))
    assert observed > 0.05
    assert permutation_p_value(observed, permuted) < 0.01


def test_permutation_false_positive_rate_is_about_alpha():
    """Two methods drawn from one process on the same images (exchangeable per image): p < 0.05 in ~5%."""
    rng = np.random.default_rng(9)
    rejected, trials = 0, 200
    for _ in range(trials):
        n = 40
        gt = rng.poisson(1.5, size=(n, 2)).astype(np.int32)
        a, b = (detections_on(rng, gt) for _ in range(2))
        observed = float(point_values([a])[0, 0] - point_values([b])[0, 0])
        rejected += permutation_p_value(observed, permuted_deltas([a], [b], 199, rng)) < 0.05
    assert 0.01 <= rejected / trials <= 0.10, rejected / trials


# --- the generic pieces ----------------------------------------------------------------------------------

def test_holm_against_a_hand_computed_case():
    # sorted: 0.005 * 4 = 0.02; 0.01 * 3 = 0.03; 0.03 * 2 = 0.06; 0.04 * 1 = 0.04 -> max(0.06, 0.04) = 0.06
    adjusted = holm(np.array([0.01, 0.04, 0.03, 0.005, np.nan]))
    assert adjusted[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02]) and np.isnan(adjusted[4])
    assert holm(np.array([0.5, 0.6])) == pytest.approx([1.0, 1.0])  # capped at 1


def test_permutation_p_value_counts_ties_and_is_never_zero():
    assert permutation_p_value(0.3, np.array([0.1, -0.3, 0.5, 0.2])) == pytest.approx(3 / 5)
    assert permutation_p_value(1.0, np.zeros(999)) == pytest.approx(1 / 1000)


def test_wilcoxon_on_paired_values():
    rng = np.random.default_rng(0)
    a = rng.normal(size=50)
    same = wilcoxon_paired(a, a.copy(), rng, 200)
    assert same.delta == 0.0 and same.p == 1.0 and same.ci_low == same.ci_high == 0.0
    shifted = wilcoxon_paired(a + 0.5 + 0.1 * rng.normal(size=50), a, rng, 200)
    assert shifted.p < 1e-6 and shifted.ci_low > 0.3 and shifted.pairs == 50
    from scipy.stats import wilcoxon
    b = a + rng.normal(size=50)
    assert wilcoxon_paired(b, a, rng, 10).p == pytest.approx(wilcoxon(b - a).pvalue)
