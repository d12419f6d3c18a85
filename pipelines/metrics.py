"""The ``metrics`` stage: fusion-quality metrics and decision-layer entropy of every fused set.

Outputs, under ``run_layout(config).metrics`` (names: :class:`fusionbench.layout.MetricsStage`)::

    <method>/metrics.csv    stem + every metric of the convention (``metrics.convention``), one row per image
    <method>/entropy.csv    stem, entropy (nats) of softmax(ResNet50(fused luminance))
    <method>/entropy.json   which ResNet50 weights produced entropy.csv (file, torchvision or random)
    summary.csv             per method: convention, images, and per metric its mean over the images
                            where it is defined and ``<metric>_n``, how many those are; entropy mean
                            and median

    <method>/metrics.json   the identity metrics.csv was computed with (:mod:`pipelines.freshness`)

Resumable by the one freshness rule (:mod:`fusionbench.identity`): a method's file is recomputed unless its
record names today's fused set (by content), split, convention (entropy: perception weights by content),
metric code, and the file's own content; a damaged or hand-edited CSV is recomputed with a warning naming
it. A fused set made under other options than this config's is refused (asked for by name) or skipped
with a warning; so is an incomplete one; either appears as missing in the summary, as does a method whose
files are stale. ``run_metrics`` for some methods keeps the summary rows of the others.
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
from fusionbench.benchmark import Benchmark
from fusionbench.errors import FusionBenchError
from fusionbench.files import atomic_write_text
from fusionbench.fused_set import check_method_name, is_complete
from fusionbench.identity import read_identity, stale_reasons
from fusionbench.images import read_vi
from pipelines.config import run_layout
from pipelines.devices import torch_device
from pipelines.file_errors import os_error_line
from pipelines.freshness import entropy_identity, metrics_identity, metrics_reasons, with_content
from pipelines.fusers import fingerprint_reasons
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


def is_current(config: Config, method: str) -> bool:
    """True when ``method``'s per-image metrics (and entropies, when configured) are fresh
    (:func:`pipelines.freshness.metrics_reasons`): a submitter skips its job then."""
    try:
        return not metrics_reasons(config, method)
    except (OSError, FusionBenchError):
        return False


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
    foreign = [line for method in asked for line in fingerprint_reasons(config, method)]
    if foreign:
        raise MetricsError("fused set(s) not made by this config (run `pipelines fuse --method M` to redo them):\n"
                           + "\n".join(foreign))
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
    """One method's per-image metrics (and entropies), unless their records say they are fresh."""
    split = config.metrics.split
    if not is_complete(bench, method):
        log.warning("metrics: fused set %r is not complete (run `pipelines fuse --method %s`); skipped",
                    method, method)
        return
    foreign = fingerprint_reasons(config, method)
    if foreign:
        log.warning("metrics: %s; skipped (run `pipelines fuse --method %s`)", "; ".join(foreign), method)
        return
    files = run_layout(config).metrics.method(method)
    identity = metrics_identity(config, method)
    stale = stale_reasons(read_identity(files.record), with_content(identity, files.per_image), str(files.per_image))
    if force or stale or _columns(files.per_image) != columns:
        _explain(stale, force, files.per_image)
        frame = _compute_metrics(bench, method, split, config.metrics.workers, convention)
        _write_csv(files.per_image, frame)
        atomic_write_text(files.record, json.dumps({"identity": with_content(identity, files.per_image)}, indent=1))
        log.info("metrics: %s written (%d images)", files.per_image, len(stems))
    else:
        log.info("metrics: %s is up to date", files.per_image)
    if network is None:
        return
    model, source = network
    identity = entropy_identity(config, method)
    stale = stale_reasons(read_identity(files.entropy_source), with_content(identity, files.entropy),
                          str(files.entropy))
    if force or stale:
        _explain(stale, force, files.entropy)
        paths = [bench.fused_image(method, split, stem) for stem in stems]
        values = image_entropies(model, paths, device)
        _write_csv(files.entropy, pd.DataFrame({"stem": stems, "entropy": values}))
        atomic_write_text(files.entropy_source, json.dumps({"kind": source.kind, "detail": source.detail,
                                                            "identity": with_content(identity, files.entropy)}))
        log.info("metrics: %s written (perception weights: %s)", files.entropy, source.kind)


def _columns(path: Path) -> list[str] | None:
    """The columns of a per-image CSV (None: missing or unreadable)."""
    try:
        return list(pd.read_csv(path, nrows=0).columns)
    except (OSError, ValueError):
        return None


def _explain(stale: list[str], force: bool, output: Path) -> None:
    """Say why an existing file is computed again: a damaged or edited file by name, other inputs or code
    by key (a first computation, or one the user forced, needs no reason)."""
    for line in stale if output.exists() and not force else ():
        log.warning("metrics: %s; computing it again", line)


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
    """One row per method from its per-image files, when they are fresh; a method without them, or whose
    files are stale (:func:`pipelines.freshness.metrics_reasons`, logged), has empty (missing) cells."""
    metrics = get_convention(convention_name(config)).metrics
    rows = []
    for method in methods:
        row: dict[str, Any] = {"method": method}
        files = run_layout(config).metrics.method(method)
        stale = metrics_reasons(config, method) if files.per_image.is_file() else ["no metrics"]
        if files.per_image.is_file() and stale:
            log.warning("metrics: %s; its row stays missing until `pipelines metrics -m %s`", "; ".join(stale), method)
        if not stale:
            row.update(convention=convention_name(config), **metric_summary(pd.read_csv(files.per_image), metrics))
            if config.metrics.entropy:
                entropy = pd.read_csv(files.entropy)["entropy"]
                row.update(entropy_mean=entropy.mean(), entropy_median=entropy.median(),
                           perception=json.loads(files.entropy_source.read_text())["kind"])
        rows.append(row)
    return pd.DataFrame(rows, columns=summary_columns(metrics))
