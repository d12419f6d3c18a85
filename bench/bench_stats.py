"""Seconds of the compare stage's detection statistics at M3FD's size, against a COCOeval call per replicate.

Synthetic per-image matches shaped like M3FD's test split (--images 840, 6 classes, --detections 100 per
image, ~1.3 objects per image and class, 80% found at IoU 0.5-0.95 with high scores, the rest false
alarms at low scores), for --methods 10 methods x --seeds 3 seeds; then exactly what `pipelines compare`
runs: per method the two-level bootstrap of mAP@50, mAP@50:95 and AP@50 per class (--bootstrap 1000
replicates), and per comparison with the references ir, vi and best a paired bootstrap and a permutation
test (--permutations 1000 per seed). Threads: numba's default (all cores).

Baseline, measured in the same run: one pycocotools ``COCOeval.evaluate() + accumulate()`` on one
(method, seed) of the same size (COCO records built from the same kind of detections), multiplied by the
number of replicates the statistics need (a COCOeval call per replicate); printed as extrapolated.

    python bench/bench_stats.py                  # the issue's size; about a minute on 2 cores
    python bench/bench_stats.py --images 200 --methods 4 --no-baseline

Writes bench/results/bench_stats.json.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import time
from pathlib import Path

import numba
import numpy as np

from detection.map_statistics import Draws, permuted_deltas, replicate_values
from detection.matches import Matches
from pipelines.compare import Settings, detection_comparisons

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("People", "Car", "Bus", "Motorcycle", "Lamp", "Truck")
THRESHOLDS = np.linspace(0.5, 0.95, 10)


def synthetic_matches(rng: np.random.Generator, images: int, detections: int, skill: float,
                      gt: np.ndarray) -> Matches:
    """One detector run on fixed ground truth ``gt`` (images, classes): ``skill`` = share of objects found."""
    image, klass, score, iou = [], [], [], []
    found = rng.binomial(gt, skill)
    false = np.maximum(detections - found.sum(axis=1), 0)
    for c in range(len(CLASSES)):
        owner = np.repeat(np.arange(images), found[:, c])
        image.append(owner), klass.append(np.full(owner.size, c)), score.append(rng.beta(5, 2, owner.size))
        iou.append(rng.uniform(0.5, 1.0, owner.size))
    owner = np.repeat(np.arange(images), false)
    image.append(owner), klass.append(rng.integers(0, len(CLASSES), owner.size)), score.append(rng.beta(1, 8, owner.size))
    iou.append(np.zeros(owner.size))
    image, klass, score, iou = map(np.concatenate, (image, klass, score, iou))
    order = np.lexsort((-score, klass))
    codes = (iou[order, None] >= THRESHOLDS[None]).astype(np.int8)
    return Matches(tuple(f"{i:05d}.png" for i in range(images)), CLASSES, THRESHOLDS, image[order].astype(np.int32),
                   klass[order].astype(np.int16), score[order], codes, gt.astype(np.int32))


def coco_baseline(rng: np.random.Generator, images: int, detections: int) -> float:
    """Seconds of one COCOeval evaluate + accumulate on ``images`` images with ``detections`` boxes each."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt_images = [{"id": i + 1, "file_name": f"{i}.png", "width": 1024, "height": 768} for i in range(images)]
    annotations, records = [], []
    for i in range(images):
        boxes = rng.uniform(0, 900, (8, 2))
        for k, (x, y) in enumerate(boxes):
            category = int(rng.integers(1, len(CLASSES) + 1))
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": category,
                                "bbox": [x, y, 60.0, 80.0], "area": 4800.0, "iscrowd": 0})
            if rng.random() < 0.8:
                records.append({"image_id": i + 1, "category_id": category, "score": float(rng.beta(5, 2)),
                                "bbox": [x + rng.normal(0, 5), y + rng.normal(0, 5), 60.0, 80.0]})
        for _ in range(detections - 8):
            x, y = rng.uniform(0, 900, 2)
            records.append({"image_id": i + 1, "category_id": int(rng.integers(1, len(CLASSES) + 1)),
                            "score": float(rng.beta(1, 8)), "bbox": [x, y, 50.0, 50.0]})
    gt = COCO()
    gt.dataset = {"images": gt_images, "annotations": annotations,
                  "categories": [{"id": k + 1, "name": n} for k, n in enumerate(CLASSES)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        start = time.perf_counter()
        coco_eval = COCOeval(gt, gt.loadRes(records), "bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=840)
    parser.add_argument("--detections", type=int, default=100)
    parser.add_argument("--methods", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--permutations", type=int, default=1000)
    parser.add_argument("--no-baseline", action="store_true", help="skip the COCOeval call")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    gt = rng.poisson(1.3, size=(args.images, len(CLASSES)))
    names = ["ir", "vi", *(f"method{k}" for k in range(args.methods - 2))]
    runs = {name: [synthetic_matches(rng, args.images, args.detections, 0.6 + 0.3 * k / args.methods, gt)
                   for _ in range(args.seeds)] for k, name in enumerate(names)}
    detections = sum(len(m.score) for seeds in runs.values() for m in seeds)
    settings = Settings(args.bootstrap, args.permutations, 0.05, 0, ("ir", "vi", "best"))

    one = runs[names[0]]  # warm-up (numba compilation, cached after the first run) on a few replicates
    replicate_values(one, Draws.make(args.images, args.seeds, 4, 0))
    permuted_deltas(one, runs[names[1]], 4, np.random.default_rng(0))

    start, cpu = time.perf_counter(), time.process_time()
    replicate_values(one, Draws.make(args.images, args.seeds, args.bootstrap, 0))
    bootstrap_s, bootstrap_cpu = time.perf_counter() - start, time.process_time() - cpu
    start, cpu = time.perf_counter(), time.process_time()
    permuted_deltas(one, runs[names[1]], args.permutations, np.random.default_rng(0))
    permutation_s, permutation_cpu = time.perf_counter() - start, time.process_time() - cpu

    start, cpu = time.perf_counter(), time.process_time()
    _, rows, _ = detection_comparisons(runs, settings)
    total_s, total_cpu = time.perf_counter() - start, time.process_time() - cpu
    comparisons = len(rows)
    replicates = args.methods * args.seeds * args.bootstrap + comparisons * args.seeds * args.permutations

    baseline_s = None if args.no_baseline else coco_baseline(np.random.default_rng(1), args.images, args.detections)
    table = [
        ("image+seed bootstrap, one method", f"{args.seeds} seeds x {args.bootstrap}", bootstrap_s, bootstrap_cpu,
         1e3 * bootstrap_s / (args.seeds * args.bootstrap)),
        ("permutation test, one comparison", f"{args.seeds} seeds x {args.permutations}", permutation_s, permutation_cpu,
         1e3 * permutation_s / (args.seeds * args.permutations)),
        (f"compare: {args.methods} methods, {comparisons} comparisons", f"{replicates} AP evaluations", total_s,
         total_cpu, 1e3 * total_s / replicates),
    ]
    if baseline_s is not None:
        table.append(("baseline: COCOeval per replicate (extrapolated)", f"{replicates} x 1 measured",
                      baseline_s * replicates, float("nan"), 1e3 * baseline_s))
    print(f"M3FD-size statistics: {args.images} images, {len(CLASSES)} classes, {detections / (args.methods * args.seeds * args.images):.0f} "
          f"detections per image, {args.methods} methods x {args.seeds} seeds; numba threads {numba.get_num_threads()}, "
          f"{os.cpu_count()} cores")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"(load average at the end: {load:.1f}: on a shared machine wall time exceeds CPU time / cores)")
    print(f"{'what':<52}{'work':>26}{'wall s':>10}{'CPU s':>10}{'ms per replicate':>18}")
    for what, work, seconds, cpu_s, per in table:
        print(f"{what:<52}{work:>26}{seconds:>10.1f}{cpu_s:>10.1f}{per:>18.3f}")
    out = ROOT / "bench" / "results" / "bench_stats.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "platform": platform.platform(), "cores": os.cpu_count(),
                               "numba_threads": numba.get_num_threads(), "comparisons": comparisons,
                               "load_average": load,
                               "rows": [dict(zip(("what", "work", "wall_s", "cpu_s", "ms_per_replicate"), r))
                                        for r in table]},
                              indent=1))
    print(f"written: {out}")


if __name__ == "__main__":
    main()
