"""``pipelines report``: ``reports/<run>/index.html`` from what the run's stages have written."""
from __future__ import annotations

import click

from pipelines.options import build_config, config_options


@click.command("report")
@config_options
def command(config_source: str, overrides: tuple[str, ...]) -> None:
    """Tables (HTML, CSV, LaTeX), comparisons, each task's figures, entropy histograms and training curves of a run."""
    from pipelines.report import build_report

    config = build_config(config_source, overrides, log_name="report", read_only=True)
    click.echo(f"report: {build_report(config)}")
