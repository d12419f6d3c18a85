"""What a detector's results depend on, as content hashes: the reuse decision of the detect stage.

Detection results are reused only while the fused images (the fuse manifest's content hashes, which
:func:`pipelines.fuse.fused_set_problems` verifies against the files first), the YOLO labels of every split
and the COCO ground truth of the test split are byte for byte what they were trained and scored on:
an edited annotation changes the labels and the ground truth, so the detector is trained again.
"""
from __future__ import annotations

import hashlib
import json

from fusionbench.errors import FusionBenchError
from fusionbench.files import sha256_file
from pipelines.benchmark import SPLITS, Benchmark
from pipelines.fuse import fused_set_identity

INPUT_KEYS = ("fused_set", "labels", "ground_truth")  # protocol entries that describe data, not settings


class DetectionInputError(FusionBenchError):
    """A label or ground-truth file the detect stage needs is missing."""


def labels_identity(benchmark: Benchmark) -> str:
    """sha256 over every split's YOLO label files (split, stem, content hash), in split-list order."""
    missing, content = [], []
    for split in SPLITS:
        for stem in benchmark.stems(split):
            path = benchmark.labels_dir(split) / f"{stem}.txt"
            if not path.is_file():
                missing.append(str(path))
                continue
            content.append((split, stem, sha256_file(path)))
    if missing:
        shown = ", ".join(missing[:5]) + (f" ... and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise DetectionInputError(f"{benchmark.root}: {len(missing)} label file(s) missing: {shown} "
                                  "(re-run `pipelines prepare`)")
    return hashlib.sha256(json.dumps(content).encode()).hexdigest()


def ground_truth_identity(benchmark: Benchmark, split: str = "test") -> str:
    """sha256 of the COCO ground truth the test mAP is computed against; checked before any training."""
    path = benchmark.coco_path(split)
    if not path.is_file():
        raise DetectionInputError(f"{path}: COCO ground truth missing (re-run `pipelines prepare`)")
    return sha256_file(path)


def detection_inputs(benchmark: Benchmark, method: str) -> dict[str, str]:
    """The data identities recorded in a method's ``protocol.json`` (keys: :data:`INPUT_KEYS`)."""
    return {"fused_set": fused_set_identity(benchmark, method), "labels": labels_identity(benchmark),
            "ground_truth": ground_truth_identity(benchmark)}
