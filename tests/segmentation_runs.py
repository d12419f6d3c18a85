"""Shortcuts the segmentation tests share: a tiny sample config, a unit's files, and an independent score."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from fusionbench.benchmark import Benchmark
from pipelines.config import run_layout
from segmentation.task import SegmentationFiles


def tiny(root: Path, methods: Sequence[str], *extra: str) -> list[str]:
    """The sample at 16 pairs of 128x96, segmentation only, two epochs at 64 px."""
    return [f"run.root={root / 'runs'}", f"report.dir={root / 'report'}", "sample.pairs=16", "sample.width=128",
            "sample.height=96", f"fusion.methods=[{','.join(methods)}]", "fusion.workers=1", "tasks.detection=[]",
            "segment.epochs=2", "segment.imgsz=64", "segment.eval_every=1", "stats.bootstrap=200",
            "stats.permutations=200", "metrics.entropy=false", "report.qualitative=1", *extra]


def unit_files(config: Any, model: str, method: str, seed: int = 0) -> SegmentationFiles:
    return SegmentationFiles(run_layout(config).task("segmentation").model(model).method(method).seed(seed).folder)


def float64_scores(config: Any, model: str, method: str) -> tuple[float, float]:
    """mIoU (classes present or predicted) and pixel accuracy from the predicted PNGs and the benchmark's
    masks, pixel by pixel in float64: independent of the confusion-matrix code."""
    bench = Benchmark(run_layout(config).benchmark)
    n = len(bench.segmentation["classes"])
    inter, union, correct, counted = np.zeros(n), np.zeros(n), 0.0, 0.0
    for stem in bench.stems("test"):
        truth = np.asarray(Image.open(bench.mask_path(stem))).astype(np.int64)
        predicted = np.asarray(Image.open(unit_files(config, model, method).predicted / f"{stem}.png")).astype(np.int64)
        valid = truth != 255
        for k in range(n):
            t, p = (truth == k) & valid, (predicted == k) & valid
            inter[k] += float(np.sum(t & p))
            union[k] += float(np.sum(t | p))
        correct += float(np.sum((truth == predicted) & valid))
        counted += float(np.sum(valid))
    present = union > 0
    return float(np.mean(inter[present] / union[present])), correct / counted
