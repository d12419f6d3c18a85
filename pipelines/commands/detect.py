"""``pipelines detect``: YOLOv5s per fused set and detector seed, test mAP@50 with pycocotools and its interval."""
from __future__ import annotations

import logging

import click

from fusionbench.errors import FusionBenchError
from pipelines.benchmark import Benchmark
from pipelines.config import run_layout
from pipelines.file_errors import os_error_line
from pipelines.fuse import check_method_name
from pipelines.options import build_config, config_options, lock_method
from pipelines.schema import Config

log = logging.getLogger("pipelines.detect")


@click.command("detect")
@config_options
@click.option("--method", "-m", "method", help="One fusion method (a fused set under <bench>/fused/).")
@click.option("--methods", help="Comma-separated methods, or 'all' for fusion.methods of the config.")
@click.option("--force", is_flag=True, help="Redo methods that are already finished (every seed).")
def command(config_source: str, overrides: tuple[str, ...], method: str | None, methods: str | None,
            force: bool) -> None:
    """Train YOLOv5s on each method's fused set once per seed of detect.seeds (same settings for every
    method), select on val, evaluate on test, and store the per-image matches the statistics use."""
    config = build_config(config_source, overrides, log_name="detect", per_method=True)
    names = _methods(config, method, methods)
    for name in names:  # one detector per method at a time; other methods may train beside it
        lock_method(run_layout(config).detect.folder, name)
    from pipelines.compare import format_statistic
    from pipelines.detect import (  # ultralytics is heavy: import on use
        detect_method,
        write_summary,
    )

    benchmark = Benchmark(run_layout(config).benchmark)
    failed = []
    for name in names:  # one method failing (a damaged set, a full disk) does not stop the others
        try:
            summary = detect_method(config, name, force=force)
        except (FusionBenchError, OSError) as error:
            line = os_error_line(f"detect {name}", error) if isinstance(error, OSError) else f"{name}: {error}"
            log.error("%s", line)
            failed.append(line)
            continue
        click.echo(f"{name}: test mAP@50 {format_statistic(summary['statistics']['map50'])} ({summary['intervals']})")
    click.echo(f"summary: {write_summary(config, benchmark.classes)}")
    if failed:
        raise click.ClickException(f"{len(failed)} of {len(names)} methods failed:\n" + "\n".join(failed))


def _methods(config: Config, method: str | None, methods: str | None) -> list[str]:
    if bool(method) == bool(methods):
        raise click.UsageError("give exactly one of --method or --methods")
    if method:
        names = [method]
    elif methods.strip() == "all":
        names = config.fusion.methods
    else:
        names = [m.strip() for m in methods.split(",") if m.strip()]
    for name in names:  # each names a folder under <run>/detect/: refused before anything is read or deleted
        check_method_name(name)
    return names
