"""``pipelines report``: ``reports/<run>/index.html`` from what the run's stages have written."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from pipelines.options import build_config, config_options
from pipelines.schema import Config


def report_inputs(config: Config) -> Any:
    """The report builder's view of a run: every path comes from the config, nothing is guessed."""
    from pipelines.benchmark import Benchmark
    from pipelines.config import benchmark_dir, report_dir, stage_dir
    from pipelines.metrics import configured_methods
    from reports.builder import RunInputs

    return RunInputs(
        name=config.run.name,
        config=config.model_dump(mode="json"),
        benchmark=Benchmark(benchmark_dir(config)),
        methods=configured_methods(config),
        fusion_dir=stage_dir(config, "fusion"),
        detect_dir=stage_dir(config, "detect"),
        metrics_dir=stage_dir(config, "metrics"),
        out=report_dir(config),
        qualitative=config.report.qualitative,
        entropy_pairs=[list(pair) for pair in config.report.entropy_pairs or []],
        score_threshold=config.report.score_threshold,
    )


def build(config: Config) -> Path:
    """Build the report of a run (what ``run-all`` calls); returns the HTML path."""
    from reports.builder import build_report

    return build_report(report_inputs(config))


@click.command("report")
@config_options
def command(config_source: str, overrides: tuple[str, ...]) -> None:
    """Tables (HTML, CSV, LaTeX), entropy histograms, qualitative grid and training curves of a run."""
    config = build_config(config_source, overrides, log_name="report")
    path = build(config)
    click.echo(f"report: {path}")
