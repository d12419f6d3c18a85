"""``pipelines detect``: YOLOv5s per fused set, test mAP@50 with pycocotools."""
from __future__ import annotations

import click

from pipelines.benchmark import Benchmark
from pipelines.config import benchmark_dir
from pipelines.options import build_config, config_options
from pipelines.schema import Config


@click.command("detect")
@config_options
@click.option("--method", "-m", "method", help="One fusion method (a fused set under <bench>/fused/).")
@click.option("--methods", help="Comma-separated methods, or 'all' for fusion.methods of the config.")
@click.option("--force", is_flag=True, help="Redo methods that are already finished.")
def command(config_source: str, overrides: tuple[str, ...], method: str | None, methods: str | None,
            force: bool) -> None:
    """Train YOLOv5s on each method's fused set (same seed and settings), select on val, evaluate on test."""
    config = build_config(config_source, overrides, log_name="detect")
    names = _methods(config, method, methods)
    from pipelines.detect import (  # ultralytics is heavy: import on use
        detect_method,
        write_summary,
    )

    benchmark = Benchmark(benchmark_dir(config))
    for name in names:
        result = detect_method(config, name, force=force)
        click.echo(f"{name}: test mAP@50 {result['map50']} (epoch {result['selected_epoch']}, "
                   f"ultralytics {result['ultralytics_map50']:.4f})")
    click.echo(f"summary: {write_summary(config, benchmark.classes)}")


def _methods(config: Config, method: str | None, methods: str | None) -> list[str]:
    if bool(method) == bool(methods):
        raise click.UsageError("give exactly one of --method or --methods")
    if method:
        return [method]
    if methods.strip() == "all":
        return config.fusion.methods
    return [m.strip() for m in methods.split(",") if m.strip()]
