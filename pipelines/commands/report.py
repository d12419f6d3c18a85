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
    from pipelines.config import run_layout
    from pipelines.metrics import configured_methods
    from reports.builder import RunInputs

    layout = run_layout(config)
    return RunInputs(
        name=config.run.name,
        config=config.model_dump(mode="json"),
        benchmark=Benchmark(layout.benchmark),
        methods=configured_methods(config),
        layout=layout,
        qualitative=config.report.qualitative,
        entropy_pairs=[list(pair) for pair in config.report.entropy_pairs or []],
        score_threshold=config.report.score_threshold,
        seeds=list(config.detect.seeds),
    )


def build(config: Config) -> Path:
    """Build the report of a run (what ``run-all`` calls); returns the HTML path."""
    from pipelines.prepare.split_files import export_split
    from reports.builder import build_report

    inputs = report_inputs(config)
    export_split(inputs.benchmark, inputs.layout.pages.split_lists)  # the exact lists, to publish with a paper
    return build_report(inputs)


@click.command("report")
@config_options
def command(config_source: str, overrides: tuple[str, ...]) -> None:
    """Tables (HTML, CSV, LaTeX), entropy histograms, qualitative grid and training curves of a run."""
    config = build_config(config_source, overrides, log_name="report", read_only=True)
    path = build(config)
    click.echo(f"report: {path}")
