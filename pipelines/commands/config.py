"""``pipelines config``: the resolved config of a run, or every key with its type, default and meaning."""
from __future__ import annotations

import click

from pipelines.options import config_options


@click.command("config")
@config_options
@click.option("--keys", is_flag=True, help="List every key: type, default, what it does.")
@click.option("--tasks", "list_tasks", is_flag=True, help="List every downstream task and its models.")
def command(config_source: str, overrides: tuple[str, ...], keys: bool, list_tasks: bool) -> None:
    """Print the config a command would run with (defaults + overlay + -s overrides), checked.

    \b
    pipelines config -c paper -s detect.epochs=10
    pipelines config --keys
    pipelines config --tasks
    """
    from fusionbench.tasks import tasks
    from pipelines.config import describe_keys, dump_config, load_config

    if list_tasks:
        for name, task in tasks().items():
            click.echo(f"{name}  (settings: {task.section}; labels: {', '.join(task.labels)}; "
                       f"statistic: {task.statistics.primary.label})")
            for model in task.models.values():
                default = " (default)" if model.name in task.default_models else ""
                click.echo(f"    {model.name}{default}: {model.summary}")
        return

    if keys:
        for key, type_name, default, description in describe_keys():
            click.echo(f"{key}  ({type_name}, default {default})\n    {description}")
        return
    click.echo(dump_config(load_config(config_source, overrides)), nl=False)
