"""Seconds of the segmentation statistics at MSRS's size, and the size of their evidence.

Synthetic per-image confusion matrices shaped like MSRS's test split (--images 361 of 480x640 pixels,
MFNet's 9 classes with the unlabelled class covering most pixels and rare small classes), for
--methods 10 methods x --seeds 3 seeds of increasing quality; then what the compare stage runs for a
task: reading every (method, seed)'s confusion.npz; per method the point values and the two-level
(image and seed) bootstrap of mIoU, pixel accuracy and IoU per class with percentile intervals
(--bootstrap 1000 replicates); per comparison of each method with the references ir, vi and the best
method by mean mIoU, the paired bootstrap interval of the mIoU difference and the paired permutation
test (--permutations 1000 per seed), Holm-adjusted per family.

    python bench/bench_segmentation_stats.py                 # the issue's size; target at most 10 s on 2 cores
    python bench/bench_segmentation_stats.py --images 100 --methods 4

Writes bench/results/bench_segmentation_stats.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from fusionbench.stats import Draws, holm, over_drawn_seeds, percentile_interval, permutation_p_value
from segmentation import confusion
from segmentation.confusion import Confusions
from segmentation.masks import MFNET_CLASSES
from segmentation.statistics import permuted_deltas, point_values, replicate_values

ROOT = Path(__file__).resolve().parents[1]
PIXELS = 480 * 640
SHARE = np.array([0.86, 0.05, 0.02, 0.01, 0.03, 0.01, 0.005, 0.005, 0.01])  # unlabelled, car, person, ...


def ground_truth(rng: np.random.Generator, images: int) -> np.ndarray:
    """Pixels per image and class (images, 9): class shares drawn around ``SHARE``, rare classes often absent."""
    shares = rng.dirichlet(SHARE * 20, size=images)
    shares[:, 1:] *= rng.random((images, len(SHARE) - 1)) < 0.6
    shares[:, 0] = 1 - shares[:, 1:].sum(axis=1)
    return np.floor(shares * PIXELS).astype(np.int64)


def segmenter(rng: np.random.Generator, pixels: np.ndarray, quality: float) -> np.ndarray:
    """Confusion matrices (images, 9, 9): per image and class a share ~ Beta around ``quality`` right, the
    rest spread over the other classes (mostly to unlabelled)."""
    images, classes = pixels.shape
    right = rng.binomial(pixels, rng.beta(20 * quality, 20 * (1 - quality), size=(images, classes)))
    matrices = np.zeros((images, classes, classes), np.int64)
    for c in range(classes):
        spread = np.full(classes, 0.3 / (classes - 2))
        spread[0] = 0.7
        spread[c] = 0.0
        spread /= spread.sum()
        matrices[:, c] = rng.multinomial(pixels[:, c] - right[:, c], spread)
        matrices[:, c, c] = right[:, c]
    return matrices


def compare(runs: dict[str, list[Confusions]], bootstrap: int, permutations: int, seed: int) -> int:
    """What the compare stage computes; returns the number of comparisons."""
    first = next(iter(runs.values()))
    draws = Draws.make(len(first[0].stems), len(first), bootstrap, seed)
    replicates, means = {}, {}
    for name, seeds in runs.items():
        means[name] = point_values(seeds).mean(axis=0)
        replicates[name] = over_drawn_seeds(replicate_values(seeds, draws), draws)
        percentile_interval(replicates[name])
    best = max(means, key=lambda name: means[name][0])
    rng = np.random.default_rng(seed)
    comparisons = 0
    for name, seeds in runs.items():
        p_values = []
        for reference in dict.fromkeys(("ir", "vi", best)):
            if reference == name:
                continue
            delta = means[name][0] - means[reference][0]
            percentile_interval(replicates[name][:, 0] - replicates[reference][:, 0])
            p_values.append(permutation_p_value(delta, permuted_deltas(seeds, runs[reference], permutations, rng)))
            comparisons += 1
        holm(np.array(p_values))
    return comparisons


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=361)
    parser.add_argument("--methods", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--permutations", type=int, default=1000)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    pixels = ground_truth(rng, args.images)
    stems = tuple(f"{i:05d}N" for i in range(args.images))
    names = ["ir", "vi", *(f"method{k}" for k in range(args.methods - 2))]
    with tempfile.TemporaryDirectory() as folder:
        paths = {}
        for k, name in enumerate(names):
            for s in range(args.seeds):
                run = Confusions(stems, MFNET_CLASSES, segmenter(rng, pixels, 0.6 + 0.3 * k / args.methods))
                paths[name, s] = Path(folder) / name / f"seed{s}" / "confusion.npz"
                confusion.save(paths[name, s], run)
        sizes = [path.stat().st_size for path in paths.values()]
        start, cpu = time.perf_counter(), time.process_time()
        runs = {name: [confusion.load(paths[name, s]) for s in range(args.seeds)] for name in names}
        load_s, load_cpu = time.perf_counter() - start, time.process_time() - cpu

    one = runs[names[0]]
    start, cpu = time.perf_counter(), time.process_time()
    replicate_values(one, Draws.make(args.images, args.seeds, args.bootstrap, 0))
    bootstrap_s, bootstrap_cpu = time.perf_counter() - start, time.process_time() - cpu
    start, cpu = time.perf_counter(), time.process_time()
    permuted_deltas(one, runs[names[1]], args.permutations, np.random.default_rng(0))
    permutation_s, permutation_cpu = time.perf_counter() - start, time.process_time() - cpu
    start, cpu = time.perf_counter(), time.process_time()
    comparisons = compare(runs, args.bootstrap, args.permutations, 0)
    total_s, total_cpu = time.perf_counter() - start, time.process_time() - cpu

    runs_count = args.methods * args.seeds
    table = [
        (f"read {runs_count} confusion.npz", f"{runs_count} x {args.images} matrices", load_s, load_cpu),
        ("image+seed bootstrap, one method", f"{args.seeds} seeds x {args.bootstrap}", bootstrap_s, bootstrap_cpu),
        ("permutation test, one comparison", f"{args.seeds} seeds x {args.permutations}", permutation_s,
         permutation_cpu),
        (f"compare: {args.methods} methods, {comparisons} comparisons", "all of the above", total_s, total_cpu),
        ("read + compare", "", load_s + total_s, load_cpu + total_cpu),
    ]
    load = os.getloadavg()[0]
    print(f"MSRS-size segmentation statistics: {args.images} images of 480x640, {len(MFNET_CLASSES)} classes, "
          f"{args.methods} methods x {args.seeds} seeds, {os.cpu_count()} cores")
    print(f"(load average at the end: {load:.1f}: on a shared machine wall time exceeds CPU time / cores)")
    print(f"{'what':<46}{'work':>28}{'wall s':>10}{'CPU s':>10}")
    for what, work, seconds, cpu_s in table:
        print(f"{what:<46}{work:>28}{seconds:>10.2f}{cpu_s:>10.2f}")
    print(f"evidence per (method, seed): confusion.npz {np.mean(sizes) / 1e3:.1f} kB mean, {max(sizes) / 1e3:.1f} kB "
          "largest (target < 1 MB; the predicted masks are separate)")
    out = ROOT / "bench" / "results" / "bench_segmentation_stats.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "platform": platform.platform(), "cores": os.cpu_count(),
                               "comparisons": comparisons, "load_average": load,
                               "confusion_npz_bytes": {"mean": float(np.mean(sizes)), "max": int(max(sizes))},
                               "rows": [dict(zip(("what", "work", "wall_s", "cpu_s"), r)) for r in table]},
                              indent=1))
    print(f"written: {out}")


if __name__ == "__main__":
    main()
