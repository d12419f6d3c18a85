"""``pipelines status``: every job of the run's SLURM grid (pending, running, done, failed), with the last lines
of the logs of running and failed ones."""
from __future__ import annotations

import click

from pipelines.options import build_config, config_options


@click.command("status")
@config_options
@click.option("--lines", "-n", default=5, show_default=True, help="Last log lines shown per running or failed job.")
def command(config_source: str, overrides: tuple[str, ...], lines: int) -> None:
    """The jobs `run-all` submitted for this run (run.executor=slurm): id, state, log; squeue and the
    jobs' result files tell (no sacct needed)."""
    from pipelines.config import run_layout
    from pipelines.executors.slurm import format_jobs
    from pipelines.executors.state import FAILED, GridState, tail

    config = build_config(config_source, overrides)
    path = run_layout(config).grid.state
    state = GridState.load(path)
    if state is None:
        raise click.ClickException(f"{path}: no SLURM grid was submitted for run {config.run.name!r}")
    state.refresh()
    state.save()
    click.echo(format_jobs(state))
    for task in state.tasks:
        if task.state == FAILED or task.state == "running":
            shown = tail(task.log, lines)
            click.echo(f"\n{task.key} ({task.state}{': ' + task.detail if task.detail else ''}), {task.log}:")
            click.echo("\n".join(f"  {line}" for line in shown) or "  (empty log)")
    counts = {s: sum(t.state == s for t in state.tasks) for s in dict.fromkeys(t.state for t in state.tasks)}
    click.echo("\n" + ", ".join(f"{n} {s}" for s, n in counts.items()))
