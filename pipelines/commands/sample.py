"""``pipelines sample``: write the synthetic raw dataset (M3FD layout)."""
from __future__ import annotations

import click

from pipelines.options import build_config, config_options
from pipelines.sample import sample_from_config


@click.command("sample")
@config_options
@click.option("--out", type=click.Path(file_okay=False), help="Output folder (default: <run dir>/sample_raw).")
def command(config_source: str, overrides: tuple[str, ...], out: str | None) -> None:
    """Generate the synthetic IR/VI road-scene sample of the config's ``sample`` section.

    \b
    pipelines sample -c sample --out /tmp/sample_raw -s sample.pairs=24
    """
    config = build_config(config_source, overrides, log_name="sample")
    path = sample_from_config(config, out)
    click.echo(f"synthetic sample: {path} (Ir/, Vis/, Annotation/, sample.json)")
