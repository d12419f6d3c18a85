"""``pipelines detect``: YOLOv5s per fused set, test mAP@50 with pycocotools."""
from __future__ import annotations

import logging

import click

from fusionbench.errors import FusionBenchError
from pipelines.benchmark import Benchmark
from pipelines.config import benchmark_dir, stage_dir
from pipelines.file_errors import os_error_line
from pipelines.fuse import check_method_name
from pipelines.options import build_config, config_options, lock_method
from pipelines.schema import Config

log = logging.getLogger("pipelines.detect")


@click.command("detect")
@config_options
@click.option("--method", "-m", "method", help="One fusion method (a fused set under <bench>/fused/).")
@click.option("--methods", help="Comma-separated methods, or 'all' for fusion.methods of the config.")
@click.option("--force", is_flag=True, help="Redo methods that are already finished.")
def command(config_source: str, overrides: tuple[str, ...], method: str | None, methods: str | None,
            force: bool) -> None:
    """Train YOLOv5s on each method's fused set (same seed and settings), select on val, evaluate on test."""
    config = build_config(config_source, overrides, log_name="detect", per_method=True)
    names = _methods(config, method, methods)
    for name in names:  # one detector per method at a time; other methods may train beside it
        lock_method(stage_dir(config, "detect"), name)
    from pipelines.detect import (  # ultralytics is heavy: import on use
        detect_method,
        write_summary,
    )

    benchmark = Benchmark(benchmark_dir(config))
    failed = []
    for name in names:  # one method failing (a damaged set, a full disk) does not stop the others
        try:
            result = detect_method(config, name, force=force)
        except (FusionBenchError, OSError) as error:
            line = os_error_line(f"detect {name}", error) if isinstance(error, OSError) else f"{name}: {error}"
            log.error("%s", line)
            failed.append(line)
            continue
        click.echo(f"{name}: test mAP@50 {result['map50']} (epoch {result['selected_epoch']}, "
                   f"ultralytics {result['ultralytics_map50']:.4f})")
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
