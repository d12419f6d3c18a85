"""Options shared by every command: the config file and free-form overrides."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, ContextManager

import click

from pipelines.config import load_config, run_layout
from pipelines.logs import setup_logging
from pipelines.run_lock import file_lock, folders_locked, method_lock_path
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
                 log_name: str | None = None, per_method: bool = False, read_only: bool = False) -> Config:
    """Load and check the config, with ``--set`` and the command's own flags (``extra``: dotted key ->
    value, ``None`` values ignored, taken as given: a path like "2024-05-01" is not YAML), then start
    logging into the run folder. Nothing is written before the whole config is valid; a command that
    writes (``log_name`` given) first takes the run's locks (:mod:`pipelines.run_lock`): shared when it
    writes ``per_method`` (it then locks each method with :func:`lock_method`), else exclusive.
    ``read_only``: the command writes nothing into the run (the report), so a read-only run is read
    without its lock and its log."""
    values = {key: value for key, value in (extra or {}).items() if value is not None}
    config = load_config(config_source, overrides, values)
    if log_name:
        unlocked = _hold(folders_locked([run_layout(config).root, run_layout(config).benchmark], shared=per_method,
                                        read_only=read_only))
        log = setup_logging(config, log_name, read_only=read_only)
        for folder in unlocked or []:
            log.warning("%s: not writable: reading it without its lock (an archived run)", folder)
    return config


def lock_method(stage_root: Path, method: str, part: str = "", shared: bool = False) -> None:
    """Hold the lock of one method's outputs under ``stage_root`` until the running command ends."""
    _hold(file_lock(method_lock_path(stage_root, method, part), shared=shared))


def _hold(lock: ContextManager[Any]) -> Any:
    """Enter ``lock`` for the life of the running click command (released when it ends, however); returns what
    it yields (None when not held). Under torchrun only rank 0 locks: the other ranks are the same command."""
    context = click.get_current_context(silent=True)
    if context is None or os.environ.get("RANK", "0") != "0":
        return None
    return context.with_resource(lock)
