"""``pipelines train-fusion``: train a learned fuser (S4Fusion, an ablation, ...) on the benchmark's TRAIN split."""
from __future__ import annotations

import click

from fusionbench.fused_set import check_method_name
from pipelines.config import run_layout
from pipelines.options import build_config, config_options, lock_method


@click.command("train-fusion")
@config_options
@click.option("--method", "-m", default="s4fusion", show_default=True,
              help="Any learned method (s4fusion, s4fusion_wo_per, an ablation such as s4fusion_add, ...).")
@click.option("--epochs", type=int, help="Override fusion.train.epochs.")
@click.option("--batch-size", type=int, help="Override fusion.train.batch_size (the global batch under torchrun).")
@click.option("--resume/--no-resume", default=True, show_default=True,
              help="Continue from the last checkpoint in <run>/fusion/<method>/ when it exists.")
@click.option("--force", is_flag=True, help="Start over even when a finished training exists.")
def command(config_source: str, overrides: tuple[str, ...], method: str, epochs: int | None,
            batch_size: int | None, resume: bool, force: bool) -> None:
    """Train a learned fuser; checkpoints every epoch, resumes exactly. Multi-GPU: torchrun --nproc-per-node N
    $(which pipelines) train-fusion ..."""
    from pipelines.train_fusion import train_fusion  # heavy imports only when the command runs

    config = build_config(config_source, overrides,
                          {"fusion.train.epochs": epochs, "fusion.train.batch_size": batch_size}, log_name="train-fusion",
                          per_method=True)
    check_method_name(method)
    lock_method(run_layout(config).fusion_stage, method)
    out_dir = train_fusion(config, method, resume=resume, force=force)
    click.echo(f"{method}: {out_dir}")
