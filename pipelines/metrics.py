"""The ``metrics`` stage: fusion-quality metrics and decision-layer entropy of every fused set.

Outputs, under ``stage_dir(config, "metrics")``::

    <method>/metrics.csv    stem + every metric of :data:`fusion.metrics.METRICS`, one row per image
    <method>/entropy.csv    stem, entropy (nats) of softmax(ResNet50(fused luminance))
    <method>/entropy.json   which ResNet50 weights produced entropy.csv (file, torchvision or random)
    summary.csv             per method: image count, metric means, entropy mean and median

Resumable: a method's file is recomputed only when it is missing, incomplete, older than the fused
set, or (entropy) computed with other weights. Methods whose fused set is not complete are skipped
with a warning and appear as missing in the summary.
"""
from __future__ import annotations

import io
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from fusion.color import luminance
from fusion.io import atomic_write_text, read_vi
from fusion.metrics import METRICS, evaluate_files
from fusion.perception import PerceptionSource, build_resnet50, decision_entropy
from pipelines.benchmark import Benchmark, Pair
from pipelines.config import benchmark_dir, stage_dir
from pipelines.devices import torch_device
from pipelines.fuse import is_complete
from pipelines.schema import Config

log = logging.getLogger(__name__)

SUMMARY_COLUMNS = ("method", "images", *METRICS, "entropy_mean", "entropy_median", "perception")


def metrics_csv(config: Config, method: str) -> Path:
    return stage_dir(config, "metrics", method) / "metrics.csv"


def entropy_csv(config: Config, method: str) -> Path:
    return stage_dir(config, "metrics", method) / "entropy.csv"


def entropy_source_json(config: Config, method: str) -> Path:
    return stage_dir(config, "metrics", method) / "entropy.json"


def summary_csv(config: Config) -> Path:
    return stage_dir(config, "metrics") / "summary.csv"


def configured_methods(config: Config) -> list[str]:
    """The run's methods: ``metrics.methods`` when given, else ``fusion.methods``."""
    return list(config.metrics.methods or config.fusion.methods)


def _up_to_date(path: Path, stems: list[str], stamp: float) -> bool:
    if not path.is_file() or path.stat().st_mtime < stamp:
        return False
    try:
        return pd.read_csv(path, dtype={"stem": str})["stem"].tolist() == stems
    except (ValueError, KeyError, pd.errors.ParserError):
        return False


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, float_format="%.6g")
    atomic_write_text(path, buffer.getvalue())


def perception_network(config: Config) -> tuple[torch.nn.Module, PerceptionSource]:
    """The frozen ResNet50 under the same weights rule as training (``perception.*``)."""
    return build_resnet50(
        weights=config.perception.weights,
        use_torchvision=config.perception.torchvision,
        allow_random=config.perception.allow_random,
    )


def _luminance_batches(paths: list[Path], batch_size: int) -> Iterator[torch.Tensor]:
    """(B, 1, H, W) luminance in [0, 1] of consecutive images, a new batch whenever the size changes."""
    batch: list[np.ndarray] = []
    for path in paths:
        grey = luminance(read_vi(path))
        if batch and (len(batch) == batch_size or grey.shape != batch[0].shape):
            yield torch.from_numpy(np.stack(batch))[:, None]
            batch = []
        batch.append(grey)
    if batch:
        yield torch.from_numpy(np.stack(batch))[:, None]


@torch.inference_mode()
def image_entropies(model: torch.nn.Module, paths: list[Path], device: torch.device,
                    batch_size: int = 4) -> list[float]:
    """Decision-layer entropy (nats) per image file: the fused luminance, grey repeated to three
    channels and ImageNet-normalised, at full resolution (the preprocessing of the L_per loss)."""
    values: list[float] = []
    for batch in _luminance_batches(paths, batch_size):
        values.extend(decision_entropy(model, batch.to(device)).double().cpu().tolist())
    return values


def _compute_metrics(bench: Benchmark, method: str, split: str, workers: int) -> pd.DataFrame:
    """Per-image metrics in ``workers`` threads (OpenCV and NumPy release the GIL), in split order."""
    def one(pair: Pair) -> dict[str, Any]:
        return {"stem": pair.stem, **evaluate_files(bench.fused_image(method, split, pair.stem), pair.ir, pair.vi)}

    pairs = bench.pairs(split)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        rows = list(tqdm(pool.map(one, pairs), total=len(pairs), desc=f"metrics {method}", unit="img", leave=False))
    return pd.DataFrame(rows, columns=["stem", *METRICS])


def _entropy_current(config: Config, method: str, stems: list[str], stamp: float,
                     source: PerceptionSource) -> bool:
    info = entropy_source_json(config, method)
    if not info.is_file() or not _up_to_date(entropy_csv(config, method), stems, stamp):
        return False
    return json.loads(info.read_text()) == {"kind": source.kind, "detail": source.detail}


def run_metrics(config: Config, methods: list[str] | None = None, force: bool = False) -> Path:
    """Compute what is missing for ``methods`` (default: the run's) and rewrite the summary."""
    bench = Benchmark(benchmark_dir(config))
    split = config.metrics.split
    methods = methods or configured_methods(config)
    stems = bench.stems(split)
    with_entropy = config.metrics.entropy
    network = perception_network(config) if with_entropy else None
    device = torch_device(config)
    if network is not None:
        network[0].to(device)

    for method in methods:
        if not is_complete(bench, method):
            log.warning("metrics: fused set %r is not complete (run `pipelines fuse --method %s`); skipped",
                        method, method)
            continue
        stamp = (bench.fused_dir(method) / "manifest.json").stat().st_mtime  # rewritten only when the set changes
        if force or not _up_to_date(metrics_csv(config, method), stems, stamp):
            frame = _compute_metrics(bench, method, split, config.metrics.workers)
            _write_csv(metrics_csv(config, method), frame)
            log.info("metrics: %s written (%d images)", metrics_csv(config, method), len(stems))
        else:
            log.info("metrics: %s is up to date", metrics_csv(config, method))
        if network is None:
            continue
        model, source = network
        if force or not _entropy_current(config, method, stems, stamp, source):
            paths = [bench.fused_image(method, split, stem) for stem in stems]
            values = image_entropies(model, paths, device, config.metrics.batch_size)
            _write_csv(entropy_csv(config, method), pd.DataFrame({"stem": stems, "entropy": values}))
            atomic_write_text(entropy_source_json(config, method),
                              json.dumps({"kind": source.kind, "detail": source.detail}))
            log.info("metrics: %s written (perception weights: %s)", entropy_csv(config, method), source.kind)

    summary = summarise(config, methods)
    _write_csv(summary_csv(config), summary)
    return summary_csv(config)


def summarise(config: Config, methods: list[str]) -> pd.DataFrame:
    """One row per method from the files on disk; a method without files has empty (missing) cells."""
    rows = []
    for method in methods:
        row: dict[str, Any] = {"method": method}
        if metrics_csv(config, method).is_file():
            frame = pd.read_csv(metrics_csv(config, method))
            row["images"] = len(frame)
            row.update(frame[list(METRICS)].mean(numeric_only=True).to_dict())
        if entropy_csv(config, method).is_file() and entropy_source_json(config, method).is_file():
            entropy = pd.read_csv(entropy_csv(config, method))["entropy"]
            row.update(entropy_mean=entropy.mean(), entropy_median=entropy.median(),
                       perception=json.loads(entropy_source_json(config, method).read_text())["kind"])
        rows.append(row)
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
