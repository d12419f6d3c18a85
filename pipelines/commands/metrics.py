"""``pipelines metrics``: fusion-quality metrics and decision-layer entropy per fused set, or the
metrics of any fused folder (``--fused/--ir/--vi/--out``) without a run."""
from __future__ import annotations

from pathlib import Path

import click

from fusion.metrics import CONVENTIONS
from pipelines.options import build_config, config_options

_FOLDER = click.Path(file_okay=False, path_type=Path)


@click.command("metrics")
@config_options
@click.option("--method", "-m", "methods", multiple=True,
              help="Fused set to evaluate (repeatable; default: metrics.methods or fusion.methods); the "
                   "summary keeps the other methods' rows.")
@click.option("--force", is_flag=True, help="Recompute even when the outputs are up to date.")
@click.option("--convention", type=click.Choice(list(CONVENTIONS)), default=None,
              help="Metric convention (default: metrics.convention).")
@click.option("--fused", type=_FOLDER, help="Folder of fused images from anywhere (needs --ir, --vi, --out).")
@click.option("--ir", type=_FOLDER, help="Folder of the infrared sources, same stems as --fused.")
@click.option("--vi", type=_FOLDER, help="Folder of the visible sources, same stems as --fused.")
@click.option("--out", type=_FOLDER, help="Where --fused writes metrics.csv and summary.csv.")
def command(config_source: str, overrides: tuple[str, ...], methods: tuple[str, ...], force: bool,
            convention: str | None, fused: Path | None, ir: Path | None, vi: Path | None, out: Path | None) -> None:
    """Per-image fusion metrics of the chosen convention and ResNet50 entropy, with means and counts."""
    folders = {"--fused": fused, "--ir": ir, "--vi": vi, "--out": out}
    if any(folders.values()):
        missing = [flag for flag, value in folders.items() if value is None]
        if missing:
            raise click.UsageError(f"{', '.join(missing)} missing: --fused, --ir, --vi and --out go together")
        if methods:
            raise click.UsageError("--method scores a run's fused sets; it does not go with --fused")
    from pipelines.metric_folders import score_folders
    from pipelines.metrics import convention_name, run_metrics  # heavy imports only when the command runs

    extra = {"metrics.convention": convention}
    if fused is not None:
        config = build_config(config_source, overrides, extra)
        summary = score_folders(fused, ir, vi, out, convention_name(config), config.metrics.workers)
    else:
        config = build_config(config_source, overrides, extra, log_name="metrics")
        summary = run_metrics(config, list(methods) or None, force=force)
    click.echo(f"summary: {summary}")
