"""``pipelines cancel``: scancel every queued or running job of the run's SLURM grid."""
from __future__ import annotations

import click

from pipelines.options import build_config, config_options


@click.command("cancel")
@config_options
def command(config_source: str, overrides: tuple[str, ...]) -> None:
    """Stop the jobs `run-all` submitted for this run (finished work stays: a later run-all resumes)."""
    from pipelines.config import run_layout
    from pipelines.executors.state import CANCELLED, GridState, scancel

    config = build_config(config_source, overrides)
    path = run_layout(config).grid.state
    state = GridState.load(path)
    if state is None:
        raise click.ClickException(f"{path}: no SLURM grid was submitted for run {config.run.name!r}")
    state.refresh()
    live = [t for t in state.live if t.id]
    scancel([t.id for t in live])
    for task in live:  # what squeue says next depends on how far each job got; this is what happened to it
        task.state, task.detail = CANCELLED, "cancelled by `pipelines cancel`"
    state.save()
    click.echo(f"cancelled {len(live)} job(s) of run {config.run.name!r}" if live else "no job was queued or running")
