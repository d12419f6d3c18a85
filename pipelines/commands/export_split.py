"""``pipelines export-split``: the prepared split as plain lists a paper can publish."""
from __future__ import annotations

from pathlib import Path

import click

from fusionbench.benchmark import Benchmark, export_split


@click.command("export-split")
@click.option("--benchmark", "bench_dir", required=True, type=click.Path(file_okay=False, exists=True),
              help="A prepared benchmark folder.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder to write the lists into.")
def command(bench_dir: str, out: str) -> None:
    """Write train.txt, val.txt, test.txt (one stem per line) and SHA256SUMS.

    \b
    pipelines export-split --benchmark runs/paper/benchmark --out paper/split
    pipelines prepare -c paper --data /data/M3FD --split-file paper/split   # gives the same lists back
    """
    for path in export_split(Benchmark(bench_dir), Path(out)):
        click.echo(str(path))
