"""``pipelines downstream --task T`` (and ``pipelines <section>`` per task, e.g. ``pipelines detect``): one
model of a downstream task per fused set and seed, evaluated on test with per-image evidence and intervals."""
from __future__ import annotations

import logging
from typing import Callable

import click

from fusionbench.errors import FusionBenchError
from fusionbench.fused_set import check_method_name
from fusionbench.tasks import get_task
from pipelines.config import run_layout
from pipelines.file_errors import os_error_line
from pipelines.options import build_config, config_options, lock_method
from pipelines.schema import Config

log = logging.getLogger("pipelines.downstream")


def run(config_source: str, overrides: tuple[str, ...], task_name: str, model: str | None, method: str | None,
        methods: str | None, force: bool) -> None:
    """Every listed method (and seed) of one task's models; one method failing does not stop the others."""
    task = get_task(task_name)
    config = build_config(config_source, overrides, log_name=task.section, per_method=True)
    names = _methods(config, method, methods)
    models = [model] if model else list(config.tasks.get(task.name) or task.default_models)
    for method_name in names:  # its fused set is read shared: a fuse that would rewrite it is refused meanwhile
        lock_method(run_layout(config).benchmark / "fused", method_name, shared=True)
    for name in models:
        for method_name in names:  # one run per (model, method) at a time; others may train beside it
            lock_method(run_layout(config).task(task.name).model(name).folder, method_name)
    from pipelines.downstream import format_statistic, run_method, write_model_summary

    first = task.statistics.primary
    failed = []
    for name in models:
        for method_name in names:
            try:
                summary = run_method(config, task.name, name, method_name, force=force)
            except (FusionBenchError, OSError) as error:
                line = (os_error_line(f"{task.section} {name} {method_name}", error) if isinstance(error, OSError)
                        else f"{name} {method_name}: {error}")
                log.error("%s", line)
                failed.append(line)
                continue
            shown = format_statistic(summary["statistics"].get(first.name), first.scale)
            click.echo(f"{name} {method_name}: test {first.label} {shown} ({summary['intervals']})")
        click.echo(f"summary: {write_model_summary(config, task.name, name)}")
    if failed:
        raise click.ClickException(f"{len(failed)} of {len(names) * len(models)} runs failed:\n" + "\n".join(failed))


def _methods(config: Config, method: str | None, methods: str | None) -> list[str]:
    if bool(method) == bool(methods):
        raise click.UsageError("give exactly one of --method or --methods")
    if method:
        names = [method]
    elif methods.strip() == "all":
        names = config.fusion.methods
    else:
        names = [m.strip() for m in methods.split(",") if m.strip()]
    for name in names:  # each names a folder under the task's model folder: refused before anything is read
        check_method_name(name)
    return names


def options(func: Callable) -> Callable:
    """The options every downstream command takes."""
    func = click.option("--force", is_flag=True, help="Redo methods that are already finished (every seed).")(func)
    func = click.option("--methods", help="Comma-separated methods, or 'all' for fusion.methods of the config.")(func)
    func = click.option("--method", "-m", "method", help="One fusion method (a fused set under <bench>/fused/).")(func)
    func = click.option("--model", help="One model of the task (default: the models the config lists for it).")(func)
    return config_options(func)


def task_command(task_name: str) -> click.Command:
    """``pipelines <section>``: this command bound to one task (``pipelines detect`` for detection)."""
    task = get_task(task_name)

    @click.command(task.section, help=f"{task.title}: train each listed model on each method's fused set once per "
                                      f"seed of {task.section}.seeds (same settings for every method), evaluate on "
                                      "the test split and store the per-image evidence the statistics use.")
    @options
    def bound(config_source: str, overrides: tuple[str, ...], model: str | None, method: str | None,
              methods: str | None, force: bool) -> None:
        run(config_source, overrides, task.name, model, method, methods, force)

    return bound


@click.command("downstream")
@options
@click.option("--task", "task_name", required=True, help="A downstream task (`pipelines config --tasks` lists them).")
def command(config_source: str, overrides: tuple[str, ...], model: str | None, method: str | None,
            methods: str | None, force: bool, task_name: str) -> None:
    """Train and evaluate one downstream task's models on each method's fused set (every seed)."""
    run(config_source, overrides, task_name, model, method, methods, force)
