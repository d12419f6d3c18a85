"""``pipelines config``: the resolved config of a run, or every key with its type, default and meaning."""
from __future__ import annotations

import click

from pipelines.options import config_options


@click.command("config")
@config_options
@click.option("--keys", is_flag=True, help="List every key: type, default, what it does.")
def command(config_source: str, overrides: tuple[str, ...], keys: bool) -> None:
    """Print the config a command would run with (defaults + overlay + -s overrides), checked.

    \b
    pipelines config -c paper -s detect.epochs=10
    pipelines config --keys
    """
    from pipelines.config import describe_keys, dump_config, load_config

    if keys:
        for key, type_name, default, description in describe_keys():
            click.echo(f"{key}  ({type_name}, default {default})\n    {description}")
        return
    click.echo(dump_config(load_config(config_source, overrides)), nl=False)
