"""``pipelines prepare``: raw dataset folder -> validated, split benchmark folder."""
from __future__ import annotations

import click

from fusionbench.benchmark import SPLITS, manifest_path
from pipelines.options import build_config, config_options
from pipelines.prepare import prepare_from_config
from pipelines.prepare.split import STRATEGIES


@click.command("prepare")
@config_options
@click.option("--data", "raw", type=click.Path(file_okay=False),
              help="Raw dataset folder in a known layout: M3FD, LLVIP, MSRS, generic (data.raw; default: the synthetic sample).")
@click.option("--out", type=click.Path(file_okay=False), help="Benchmark folder (data.benchmark).")
@click.option("--seed", type=int, help="Split seed (data.split.seed).")
@click.option("--split-by", type=click.Choice(STRATEGIES),
              help="auto, random, whole scenes, published split files, or the layout's official split (data.split.by).")
@click.option("--split-file", "split_files", multiple=True, type=click.Path(exists=True),
              help="A published split: train.txt/val.txt/test.txt, a folder of them, or TarDAL's scenario.json "
                   "(repeatable; data.split.files, sets data.split.by=file).")
@click.option("--skip-bad", is_flag=True, default=None,
              help="Leave broken pairs out (listed in the manifest) instead of stopping (data.skip_bad).")
def command(config_source: str, overrides: tuple[str, ...], raw: str | None, out: str | None, seed: int | None,
            split_by: str | None, split_files: tuple[str, ...], skip_bad: bool | None) -> None:
    """Validate a raw IR/VI dataset, split it (7:1:2, by scene, a published split) and write labels (YOLO, COCO) and a manifest.

    \b
    pipelines prepare -c sample                       # the synthetic sample
    pipelines prepare -c paper --data /data/M3FD --split-by scene
    pipelines prepare -c paper --data /data/M3FD --split-file m3fd-zxSplit/   # a published split
    pipelines prepare --data ../shared/data/msrs_det20 --out runs/msrs/benchmark
    """
    config = build_config(config_source, overrides, {
        "data.raw": raw, "data.benchmark": out, "data.split.seed": seed,
        "data.split.by": split_by or ("file" if split_files else None),
        "data.split.files": list(split_files) or None, "data.skip_bad": skip_bad}, log_name="prepare")
    benchmark = prepare_from_config(config)
    manifest = benchmark.manifest
    click.echo(f"benchmark: {benchmark.root}  ({manifest['source']['layout']} layout, "
               f"{manifest['split']['strategy']} split, seed {manifest['split']['seed']})")
    click.echo(f"{'split':<6} {'pairs':>6} {'backgr':>6}  " + " ".join(f"{c:>10}" for c in benchmark.classes))
    for split in SPLITS:
        counts = manifest["counts"][split]
        click.echo(f"{split:<6} {counts['pairs']:>6} {counts['background']:>6}  "
                   + " ".join(f"{counts['boxes'][c]:>10}" for c in benchmark.classes))
    leak = manifest["leakage"]
    click.echo("test images with a near-duplicate in train: " + ", ".join(
        f"{name} {value['near_duplicates_in_train']}/{value['test']}" for name, value in leak.items()
        if isinstance(value, dict)) + f" ({manifest['split']['strategy']} split used)")
    fixes, skipped = manifest["fixes"], manifest["skipped"]
    if fixes["clipped_boxes"] or fixes["dropped_boxes"] or skipped:
        click.echo(f"boxes clipped {fixes['clipped_boxes']}, dropped {fixes['dropped_boxes']}; "
                   f"pairs skipped {len(skipped)} (see {manifest_path(benchmark.root)})")
