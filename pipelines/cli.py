"""The ``pipelines`` command line.

Each command lives in its own module under ``pipelines/commands/`` and exposes a click
command named ``command``; this file only collects them, so stages can be added without
touching each other.
"""
from __future__ import annotations

import importlib
import pkgutil
import sys

import click

import fusion  # noqa: F401  (first: sets the OpenMP wait policy before any command imports torch)
from pipelines import commands


class _Commands(click.Group):
    """Lists the command modules lazily so ``pipelines --help`` stays fast."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = [m.name.replace("_", "-") for m in pkgutil.iter_modules(commands.__path__)]
        return sorted(n for n in names if not n.startswith("-"))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        module_name = name.replace("-", "_")
        if module_name not in {m.name for m in pkgutil.iter_modules(commands.__path__)}:
            return None
        module = importlib.import_module(f"pipelines.commands.{module_name}")
        return module.command


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fusionbench")
def cli() -> None:
    """Infrared/visible fusion benchmark: prepare -> train-fusion -> fuse -> detect -> metrics -> report."""


def main() -> None:
    try:
        cli(standalone_mode=True)
    except KeyboardInterrupt:
        click.echo("interrupted; rerun the same command to resume", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
