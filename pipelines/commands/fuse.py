"""``pipelines fuse``: write fused sets into the prepared benchmark (resumable)."""
from __future__ import annotations

import logging

import click

from fusion.engine import FuseError, Shard
from fusion.registry import FuserError, available_methods
from fusionbench.benchmark import BenchmarkError
from fusionbench.fused_set import check_method_name
from fusionbench.images import ImageError
from pipelines.config import configured_methods, run_layout
from pipelines.file_errors import os_error_line
from pipelines.fuse import fuse_method
from pipelines.options import build_config, config_options, lock_method
from pipelines.schema import Config

log = logging.getLogger("pipelines.fuse")


@click.command("fuse")
@config_options
@click.option("--method", "-m", help="One method: a registered fuser, a learned one, or any name with --from.")
@click.option("--methods", help="Comma-separated methods, or 'all' for fusion.methods of the config.")
@click.option("--weights", type=click.Path(dir_okay=False), help="Checkpoint for a learned method.")
@click.option("--from", "source", type=click.Path(file_okay=False),
              help="Import a folder of fused images made by another method's own code (matched by stem).")
@click.option("--name", "display_name", help="Display name of the method in reports (with --from).")
@click.option("--keep-grey", is_flag=True, default=None, help="Keep grey imported results grey.")
@click.option("--shard", default="1/1", show_default=True, help="Fuse only part i of n (1-based), e.g. 2/4.")
@click.option("--workers", type=int, help="Worker processes for CPU fusers (fusion.workers).")
@click.option("--batch-size", type=int, help="Pairs per batch for learned fusers (fusion.batch_size).")
@click.option("--force", is_flag=True, help="Redo every image, ignoring the manifest.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def command(config_source, overrides, method, methods, weights, source, display_name, keep_grey, shard,
            workers, batch_size, force, no_progress) -> None:
    """Fuse every pair of the benchmark with method M into <benchmark>/fused/M/.

    \b
    pipelines fuse -c sample --method gff
    pipelines fuse -c paper --methods all
    pipelines fuse --method s4fusion --weights model.pkl
    pipelines fuse --method defusion --from ~/DeFusion/results --name DeFusion
    """
    config = build_config(config_source, overrides,
                          {"fusion.workers": workers, "fusion.batch_size": batch_size}, log_name="fuse",
                          per_method=True)
    names = _methods(config, method, methods)
    if len(names) > 1 and (weights or source or display_name):
        raise click.UsageError("--weights, --from and --name apply to a single --method")
    try:
        part = Shard.parse(shard)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--shard") from error
    for name in names:  # the shards of one set run side by side; anything else writing the set is refused
        check_method_name(name)
        fused = run_layout(config).benchmark / "fused"
        if part.count > 1:
            lock_method(fused, name, shared=True)
            lock_method(fused, name, part=part.name)
        else:
            lock_method(fused, name)
    failed = []
    for name in names:  # one method failing (e.g. an untrained checkpoint) does not stop the others
        try:
            out = fuse_method(config, name, weights=weights, source=source, display_name=display_name,
                              keep_grey=keep_grey, shard=part, force=force, progress=not no_progress)
            log.info("%s: fused set in %s", name, out)
        except (FuseError, FuserError, BenchmarkError, ImageError, FileNotFoundError, ValueError) as error:
            log.error("%s", error)
            failed.append(f"{name}: {error}")
        except OSError as error:  # a full disk or a permission: say where, then try the next method
            line = os_error_line(f"fuse {name}", error)
            log.error("%s", line)
            failed.append(line)
    if failed:
        raise click.ClickException(f"{len(failed)} of {len(names)} methods failed:\n" + "\n".join(failed))


def _methods(config: Config, method: str | None, methods: str | None) -> list[str]:
    if bool(method) == bool(methods):
        raise click.UsageError("give exactly one of --method M or --methods a,b,c|all "
                               f"(registered: {', '.join(available_methods())})")
    if method:
        return [method]
    if methods.strip() == "all":
        return configured_methods(config)
    return [m.strip() for m in methods.split(",") if m.strip()]
