"""Options shared by every command: the config file and free-form overrides."""
from __future__ import annotations

from typing import Any, Callable

import click

from pipelines.config import load_config, set_value
from pipelines.logs import setup_logging


def config_options(func: Callable) -> Callable:
    """Add ``--config`` and repeatable ``--set key=value`` to a command."""
    func = click.option(
        "--set", "-s", "overrides", multiple=True, metavar="KEY=VALUE",
        help="Override a config value, e.g. -s detect.epochs=2 (repeatable).",
    )(func)
    func = click.option(
        "--config", "-c", "config_source", default="sample", show_default=True,
        help="YAML config: a path or a built-in name (paper, sample).",
    )(func)
    return func


def build_config(config_source: str, overrides: tuple[str, ...], extra: dict[str, Any] | None = None,
                 log_name: str | None = None) -> dict[str, Any]:
    """Load the config, apply ``--set`` and the command's own flags (``extra``: dotted key -> value,
    ``None`` values ignored), and start logging into the run folder."""
    try:
        config = load_config(config_source, overrides)
        for key, value in (extra or {}).items():
            if value is not None:  # taken as given: a path like "2024-05-01" or "runs/x #1" is not YAML
                set_value(config, key, value)
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    if log_name:
        setup_logging(config, log_name)
    return config
