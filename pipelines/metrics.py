"""The ``metrics`` stage: fusion-quality metrics and decision-layer entropy of every fused set.

Outputs, under ``run_layout(config).metrics`` (names: :class:`fusionbench.layout.MetricsStage`)::

    <method>/metrics.csv    stem + every metric of the convention (``metrics.convention``), one row per image
    <method>/entropy.csv    stem, entropy (nats) of softmax(ResNet50(fused luminance))
    <method>/entropy.json   which ResNet50 weights produced entropy.csv (file, torchvision or random)
    summary.csv             per method: convention, images, and per metric its mean over the images
                            where it is defined and ``<metric>_n``, how many those are; entropy mean
                            and median

Resumable: a method's file is recomputed only when it is missing, incomplete, older than the fused
set, computed under another convention, or (entropy) computed with other weights. Methods whose
fused set is not complete are skipped with a warning and appear as missing in the summary.
``run_metrics`` for some methods keeps the summary rows of the others.
"""
from __future__ import annotations

import io
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm import tqdm

from fusion.color import luminance
from fusion.metrics import evaluate_files, get_convention
from fusion.perception import PerceptionSource, decision_entropy
from fusionbench.benchmark import Benchmark, BenchmarkError
from fusionbench.errors import FusionBenchError
from fusionbench.files import atomic_write_text
from fusionbench.fused_set import check_method_name, is_complete
from fusionbench.images import read_vi
from fusionbench.layout import MANIFEST
from pipelines.config import run_layout
from pipelines.devices import torch_device
from pipelines.file_errors import os_error_line
from pipelines.perception import perception_network
from pipelines.schema import Config

log = logging.getLogger(__name__)

ENTROPY_COLUMNS = ("entropy_mean", "entropy_median", "perception")


class MetricsError(FusionBenchError):
    """Methods whose metrics could not be written (each named with its path and cause)."""


def convention_name(config: Config) -> str:
    """The run's metric convention (``metrics.convention``)."""
    return get_convention(config.metrics.convention).name


def summary_columns(metrics: tuple[str, ...]) -> list[str]:
    """Columns of summary.csv: a mean and a count per metric, then the entropy statistics."""
    return ["method", "convention", "images", *(c for m in metrics for c in (m, f"{m}_n")), *ENTROPY_COLUMNS]


def configured_methods(config: Config) -> list[str]:
    """The run's methods: ``metrics.methods`` when given, else ``fusion.methods``."""
    return list(config.metrics.methods or config.fusion.methods)


def _up_to_date(path: Path, stems: list[str], stamp: float, columns: list[str] | None = None) -> bool:
    if not path.is_file() or path.stat().st_mtime < stamp:
        return False
    try:
        frame = pd.read_csv(path, dtype={"stem": str})
    except (ValueError, pd.errors.ParserError):
        return False
    return "stem" in frame and frame["stem"].tolist() == stems and (columns is None or list(frame.columns) == columns)


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, float_format="%.10g")
    atomic_write_text(path, buffer.getvalue())


@torch.inference_mode()
def image_entropies(model: torch.nn.Module, paths: list[Path], device: torch.device) -> list[float]:
    """Decision-layer entropy (nats) per image file: the fused luminance, grey repeated to three
    channels and ImageNet-normalised, at full resolution (the preprocessing of the L_per loss).

    One image per forward pass: a batch of another size runs other convolution kernels, whose sums round
    differently (the 6th digit moved with the batch size), so a number would depend on its neighbours."""
    values = []
    for path in paths:
        grey = torch.from_numpy(luminance(read_vi(path)))[None, None]  # (1, 1, H, W)
        values.append(float(decision_entropy(model, grey.to(device))))
    return values


def score_triples(triples: list[tuple[str, Path, Path, Path]], convention: str, workers: int,
                  label: str) -> pd.DataFrame:
    """Per-image metrics of (stem, fused, IR, VI) files in ``workers`` threads (OpenCV, NumPy and
    the numba FMI kernel release the GIL), in the given order: a ``stem`` column and one column
    per metric."""
    def one(triple: tuple[str, Path, Path, Path]) -> dict[str, Any]:
        stem, fused, ir, vi = triple
        return {"stem": stem, **evaluate_files(fused, ir, vi, convention)}

    with ThreadPoolExecutor(max(1, workers)) as pool:
        rows = list(tqdm(pool.map(one, triples), total=len(triples), desc=f"metrics {label}", unit="img",
                         leave=False))
    return pd.DataFrame(rows, columns=["stem", *get_convention(convention).metrics])


def _compute_metrics(bench: Benchmark, method: str, split: str, workers: int, convention: str) -> pd.DataFrame:
    triples = [(pair.stem, bench.fused_image(method, split, pair.stem), pair.ir, pair.vi)
               for pair in bench.pairs(split)]
    return score_triples(triples, convention, workers, method)


def _entropy_current(config: Config, method: str, stems: list[str], stamp: float,
                     source: PerceptionSource) -> bool:
    files = run_layout(config).metrics.method(method)
    if not files.entropy_source.is_file() or not _up_to_date(files.entropy, stems, stamp):
        return False
    return json.loads(files.entropy_source.read_text()) == {"kind": source.kind, "detail": source.detail}


def is_current(config: Config, method: str) -> bool:
    """True when ``method``'s per-image metrics (and entropies, when configured) are newer than its fused
    set: a submitter skips its job then (the job itself checks the rows and the convention)."""
    try:
        fused_manifest = Benchmark(run_layout(config).benchmark).fused_dir(method) / MANIFEST
    except BenchmarkError:
        return False
    files = run_layout(config).metrics.method(method)
    wanted = [files.per_image, *((files.entropy, files.entropy_source) if config.metrics.entropy else ())]
    if not fused_manifest.is_file() or not all(path.is_file() for path in wanted):
        return False
    stamp = fused_manifest.stat().st_mtime
    return all(path.stat().st_mtime >= stamp for path in wanted)


def run_metrics(config: Config, methods: list[str] | None = None, force: bool = False) -> Path:
    """Compute what is missing for ``methods`` (default: the run's) and rewrite the summary with
    their rows and those of the methods already in it. A method asked for by name needs a fused set (a
    configured one without is skipped, and shown as missing)."""
    asked = list(methods or [])
    methods = asked or configured_methods(config)
    for method in methods:  # each names a folder of the stage: refused before anything is read or written
        check_method_name(method)
    bench = Benchmark(run_layout(config).benchmark)
    unfused = [method for method in asked if not bench.fused_dir(method).is_dir()]
    if unfused:
        raise MetricsError(f"no fused set {', '.join(map(repr, unfused))} in {bench.fused_dir(unfused[0]).parent}: "
                           f"run `pipelines fuse --method {unfused[0]}` first")
    split = config.metrics.split
    stems = bench.stems(split)
    convention = convention_name(config)
    columns = ["stem", *get_convention(convention).metrics]
    with_entropy = config.metrics.entropy
    network = perception_network(config) if with_entropy else None
    device = torch_device(config)
    if network is not None:
        network[0].to(device)

    failed = []
    for method in methods:  # a full disk or a permission stops one method, not the others
        try:
            _method_metrics(config, bench, method, stems, columns, convention, network, device, force)
        except OSError as error:
            failed.append(os_error_line(f"metrics {method}", error))
            log.error("%s", failed[-1])

    summary_path = run_layout(config).metrics.summary
    listed = pd.read_csv(summary_path)["method"].tolist() if summary_path.is_file() else []
    summary = summarise(config, list(dict.fromkeys([*listed, *configured_methods(config), *methods])))
    _write_csv(summary_path, summary)
    if failed:
        raise MetricsError(f"{len(failed)} of {len(methods)} methods failed:\n" + "\n".join(failed))
    return summary_path


def _method_metrics(config: Config, bench: Benchmark, method: str, stems: list[str], columns: list[str],
                    convention: str, network: tuple[torch.nn.Module, PerceptionSource] | None,
                    device: torch.device, force: bool) -> None:
    """One method's per-image metrics (and entropies), unless they are up to date."""
    split = config.metrics.split
    if not is_complete(bench, method):
        log.warning("metrics: fused set %r is not complete (run `pipelines fuse --method %s`); skipped",
                    method, method)
        return
    stamp = (bench.fused_dir(method) / MANIFEST).stat().st_mtime  # rewritten only when the set changes
    files = run_layout(config).metrics.method(method)
    if force or not _up_to_date(files.per_image, stems, stamp, columns):
        frame = _compute_metrics(bench, method, split, config.metrics.workers, convention)
        _write_csv(files.per_image, frame)
        log.info("metrics: %s written (%d images)", files.per_image, len(stems))
    else:
        log.info("metrics: %s is up to date", files.per_image)
    if network is None:
        return
    model, source = network
    if force or not _entropy_current(config, method, stems, stamp, source):
        paths = [bench.fused_image(method, split, stem) for stem in stems]
        values = image_entropies(model, paths, device)
        _write_csv(files.entropy, pd.DataFrame({"stem": stems, "entropy": values}))
        atomic_write_text(files.entropy_source, json.dumps({"kind": source.kind, "detail": source.detail}))
        log.info("metrics: %s written (perception weights: %s)", files.entropy, source.kind)


def metric_summary(frame: pd.DataFrame, metrics: tuple[str, ...]) -> dict[str, Any]:
    """``images`` and, per metric, the mean over the images where it is defined (not NaN) and
    ``<metric>_n``, the number of those images: an undefined value is counted, never averaged."""
    row: dict[str, Any] = {"images": len(frame)}
    for name in metrics:
        values = pd.to_numeric(frame[name], errors="coerce") if name in frame else pd.Series(dtype=float)
        row[f"{name}_n"] = int(values.notna().sum())
        row[name] = float(values.mean()) if row[f"{name}_n"] else float("nan")
    return row


def summarise(config: Config, methods: list[str]) -> pd.DataFrame:
    """One row per method from the files on disk; a method without files has empty (missing) cells."""
    metrics = get_convention(convention_name(config)).metrics
    rows = []
    for method in methods:
        row: dict[str, Any] = {"method": method}
        files = run_layout(config).metrics.method(method)
        if files.per_image.is_file():
            frame = pd.read_csv(files.per_image)
            if list(frame.columns) == ["stem", *metrics]:
                row.update(convention=convention_name(config), **metric_summary(frame, metrics))
            else:
                log.warning("metrics: %s was computed under another convention than %r; its row stays "
                            "missing until `pipelines metrics -m %s`", files.per_image,
                            convention_name(config), method)
        if files.entropy.is_file() and files.entropy_source.is_file():
            entropy = pd.read_csv(files.entropy)["entropy"]
            row.update(entropy_mean=entropy.mean(), entropy_median=entropy.median(),
                       perception=json.loads(files.entropy_source.read_text())["kind"])
        rows.append(row)
    return pd.DataFrame(rows, columns=summary_columns(metrics))
