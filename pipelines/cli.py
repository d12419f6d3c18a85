"""The ``pipelines`` command line.

Each command lives in its own module under ``pipelines/commands/`` and exposes a click
command named ``command``; this file only collects them, so stages can be added without
touching each other.
"""
from __future__ import annotations

import importlib
import pkgutil
import signal
import sys

import click

import fusion  # noqa: F401  (first: sets the OpenMP wait policy before any command imports torch)
from fusionbench.errors import FusionBenchError
from pipelines import commands
from pipelines.file_errors import os_error_line


class UserError(click.ClickException):
    """A :class:`FusionBenchError` as click shows it: one line, exit 2 (no traceback: the message says it all)."""

    exit_code = 2


class _Commands(click.Group):
    """Lists the command modules lazily so ``pipelines --help`` stays fast."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except FusionBenchError as error:
            raise UserError(str(error)) from error
        except OSError as error:  # a full disk, a permission: the path and the cause, not a traceback
            raise UserError(os_error_line(ctx.invoked_subcommand or "pipelines", error)) from error

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = [m.name.replace("_", "-") for m in pkgutil.iter_modules(commands.__path__)]
        return sorted({*(n for n in names if not n.startswith("-")), *_task_commands()})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        module_name = name.replace("-", "_")
        if module_name in {m.name for m in pkgutil.iter_modules(commands.__path__)}:
            return importlib.import_module(f"pipelines.commands.{module_name}").command
        task = _task_commands().get(name)
        if task is None:
            return None
        from pipelines.commands.downstream import task_command

        return task_command(task)


def _task_commands() -> dict[str, str]:
    """``pipelines <section>`` for each downstream task (``detect`` for detection): section -> task."""
    from fusionbench.tasks import tasks

    return {task.section: name for name, task in tasks().items()}


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fusionbench")
def cli() -> None:
    """Infrared/visible fusion benchmark: prepare -> train-fusion -> fuse -> each downstream task (detect, ...)
    -> metrics -> compare -> report."""


INTERRUPTED = 130  # the shell's code for a run ended by Ctrl-C (128 + SIGINT)
TERMINATED = 143  # ... and by SIGTERM (128 + SIGTERM), what schedulers and `kill` send


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, like Ctrl-C's KeyboardInterrupt: every stage that saves its
    progress on Ctrl-C (the fuse manifest, a detector's last epoch) does so on SIGTERM too."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def main(args: list[str] | None = None) -> None:
    """Run a command. A :class:`FusionBenchError` is one clean line and exit 2 (:class:`UserError`);
    Ctrl-C and SIGTERM say how to resume and exit 130 and 143; any other exception is a bug and keeps its
    traceback."""
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        cli.main(args=args, standalone_mode=False)
    except (KeyboardInterrupt, click.exceptions.Abort) as stop:
        click.echo("interrupted; rerun the same command to resume", err=True)
        terminated = isinstance(stop, Terminated) or isinstance(stop.__cause__, Terminated)  # click wraps it in Abort
        sys.exit(TERMINATED if terminated else INTERRUPTED)
    except click.exceptions.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    finally:
        signal.signal(signal.SIGTERM, previous)  # a caller in the same process (a test) keeps its own


if __name__ == "__main__":
    main()
