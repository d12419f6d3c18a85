"""``pipelines metrics``: fusion-quality metrics and decision-layer entropy per fused set."""
from __future__ import annotations

import click

from pipelines.options import build_config, config_options


@click.command("metrics")
@config_options
@click.option("--method", "-m", "methods", multiple=True,
              help="Fused set to evaluate (repeatable; default: metrics.methods or fusion.methods).")
@click.option("--force", is_flag=True, help="Recompute even when the outputs are up to date.")
def command(config_source: str, overrides: tuple[str, ...], methods: tuple[str, ...], force: bool) -> None:
    """Per-image EN, SD, SF, AG, MI, SCD, VIF, Qabf, SSIM, PSNR, CC and ResNet50 entropy, with means."""
    from pipelines.metrics import run_metrics  # heavy imports only when the command runs

    config = build_config(config_source, overrides, log_name="metrics")
    summary = run_metrics(config, list(methods) or None, force=force)
    click.echo(f"summary: {summary}")
