"""Options shared by every command: the config file and free-form overrides."""
from __future__ import annotations

from typing import Any, Callable

import click

from pipelines.config import load_config
from pipelines.logs import setup_logging
from pipelines.schema import Config


def config_options(func: Callable) -> Callable:
    """Add ``--config`` and repeatable ``--set key=value`` to a command."""
    func = click.option(
        "--set", "-s", "overrides", multiple=True, metavar="KEY=VALUE",
        help="Override a config value, e.g. -s detect.epochs=2 (repeatable; `pipelines config --keys` lists them).",
    )(func)
    func = click.option(
        "--config", "-c", "config_source", default="sample", show_default=True,
        help="Config overlay: a YAML path or a built-in name (paper, sample, llvip).",
    )(func)
    return func


def build_config(config_source: str, overrides: tuple[str, ...], extra: dict[str, Any] | None = None,
                 log_name: str | None = None) -> Config:
    """Load and check the config, with ``--set`` and the command's own flags (``extra``: dotted key ->
    value, ``None`` values ignored, taken as given: a path like "2024-05-01" is not YAML), then start
    logging into the run folder. Nothing is written before the whole config is valid."""
    values = {key: value for key, value in (extra or {}).items() if value is not None}
    config = load_config(config_source, overrides, values)
    if log_name:
        setup_logging(config, log_name)
    return config
