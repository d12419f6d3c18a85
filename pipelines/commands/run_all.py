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
@click.option("--detach", is_flag=True, help="run.executor=slurm: submit the grid and return (watch it with "
                                             "`pipelines status`).")
def command(config_source: str, overrides: tuple[str, ...], data: str | None, device: str | None,
            no_progress: bool, detach: bool) -> None:
    """Prepare, train S4Fusion, fuse every method, detect, compute metrics and build the report.

    Every finished step is skipped, an interrupted one resumes: rerun the same command after a
    crash. Without a dataset (data.raw) it runs the embedded synthetic sample.

    \b
    pipelines run-all                                   # synthetic sample on CPU (sample.yaml)
    pipelines run-all -c paper --data /data/M3FD        # the published protocol
    pipelines run-all -c paper --data /data/M3FD -s methods.s4fusion.weights=model.pkl
    pipelines run-all -c paper --data /data/M3FD -s run.executor=local   # the grid, 2 tasks at a time
    pipelines run-all -c paper --data /data/M3FD -s run.executor=slurm   # the grid as SLURM jobs
    """
    from pipelines.run_all import format_summary, run_all

    values = {"data.raw": data, "run.device": device}
    executor = build_config(config_source, overrides, values).run.executor
    if executor == "slurm":
        summary = _on_slurm(config_source, overrides, values, detach)
    else:
        if detach:
            raise click.UsageError(f"--detach goes with run.executor=slurm (run.executor={executor} runs on this machine)")
        _refuse_beside_a_live_grid(build_config(config_source, overrides, values))
        if executor == "local":
            summary, config = _on_this_machine(config_source, overrides, values)
        else:
            config = build_config(config_source, overrides, values, log_name="run-all")
            summary = run_all(config, progress=not no_progress)
        click.echo(format_summary(config, summary))
    if summary is not None and summary.failures:
        sys.exit(1)


def _refuse_beside_a_live_grid(config: object) -> None:
    """Inline run-all would write what the run's queued SLURM jobs are about to write: refused, saying how
    to wait or stop them (pending jobs hold no lock yet, so the locks alone would not stop it)."""
    from pipelines.config import run_layout
    from pipelines.executors.state import GridState, SlurmError

    state = GridState.load(run_layout(config).grid.state)
    if state is None or not state.live:
        return
    try:
        state.refresh()
    except SlurmError:  # no SLURM on this machine: the record cannot be checked, nor its jobs write here
        return
    if state.live:
        raise click.ClickException(f"{run_layout(config).grid.state}: {len(state.live)} SLURM job(s) of this run are "
                                   "still queued or running; wait for them (`pipelines status`), stop them "
                                   "(`pipelines cancel`), or run with -s run.executor=slurm to re-attach")


def _on_this_machine(config_source: str, overrides: tuple[str, ...], values: dict) -> tuple[object, object]:
    """The grid in local worker processes (the summary and the config); :func:`run_local` takes and leaves the
    run's locks itself."""
    from pipelines.executors.local import run_local

    config = build_config(config_source, overrides, values)
    return run_local(config), config


def _on_slurm(config_source: str, overrides: tuple[str, ...], values: dict, detach: bool) -> object:
    """Submit (or re-attach to) the run's grid; the summary once it has ended, None when ``detach``. Holds
    no lock of the run while its jobs run (they take the run's locks themselves)."""
    from pipelines.executors.slurm import format_jobs, run_grid
    from pipelines.executors.state import as_run_summary
    from pipelines.logs import setup_logging
    from pipelines.run_all import format_summary

    config = build_config(config_source, overrides, values)
    setup_logging(config, "run-all")
    state = run_grid(config, detach=detach)
    if detach:
        click.echo(format_jobs(state))
        click.echo(f"watch: pipelines status -c {config_source} ...; stop: pipelines cancel -c {config_source} ...")
        return None
    summary = as_run_summary(config, state.tasks)
    click.echo(format_summary(config, summary))
    click.echo(format_jobs(state))
    return summary
