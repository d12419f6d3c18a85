"""``pipelines compare``: intervals and paired tests of the run's detection and fusion-metric results."""
from __future__ import annotations

import click

from pipelines.options import build_config, config_options


@click.command("compare")
@config_options
def command(config_source: str, overrides: tuple[str, ...]) -> None:
    """Bootstrap intervals (seeds and test images) for every mAP, permutation tests of mAP@50 and Wilcoxon
    tests of every fusion metric against the references of report.compare_to, Holm-adjusted.

    Reads the per-image matches of `pipelines detect` and the per-image values of `pipelines metrics`;
    writes <run>/compare/*.csv. Skips when its inputs and settings have not changed.
    """
    config = build_config(config_source, overrides, log_name="compare")
    from pipelines.compare import run_compare
    from pipelines.config import run_layout
    from pipelines.metrics import configured_methods

    run_compare(config, configured_methods(config))
    click.echo(f"compare: {run_layout(config).compare.folder}")
