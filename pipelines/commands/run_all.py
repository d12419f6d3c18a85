"""``pipelines run-all``: the whole benchmark in one command (the synthetic sample when no dataset is given)."""
from __future__ import annotations

import sys

import click

from pipelines.options import build_config, config_options


@click.command("run-all")
@config_options
@click.option("--data", type=click.Path(file_okay=False), help="Raw dataset folder (M3FD or generic layout): data.raw.")
@click.option("--device", help="run.device: auto, cpu, cuda, cuda:1 ...")
@click.option("--no-progress", is_flag=True, help="No progress bars (logs only).")
def command(config_source: str, overrides: tuple[str, ...], data: str | None, device: str | None,
            no_progress: bool) -> None:
    """Prepare, train S4Fusion, fuse every method, detect, compute metrics and build the report.

    Every finished step is skipped, an interrupted one resumes: rerun the same command after a
    crash. Without a dataset (data.raw) it runs the embedded synthetic sample.

    \b
    pipelines run-all                                   # synthetic sample on CPU (sample.yaml)
    pipelines run-all -c paper --data /data/M3FD        # the published protocol
    pipelines run-all -c paper --data /data/M3FD -s methods.s4fusion.weights=model.pkl
    """
    from pipelines.run_all import format_summary, run_all

    config = build_config(config_source, overrides, {"data.raw": data, "run.device": device}, log_name="run-all")
    summary = run_all(config, progress=not no_progress)
    click.echo(format_summary(config, summary))
    if summary.failures:
        sys.exit(1)
