"""A learned fuser's training on several GPUs of one node as one SLURM job (executor.gpus.train > 1): one task per
GPU, torch.distributed set up from SLURM's variables, DDP (gloo here: the GPUs are fake)."""
from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.config import load_config, run_layout
from pipelines.executors.slurm import submit
from pipelines.executors.state import GridState, wait
from pipelines.grid import plan
from pipelines.prepare import prepare_from_config

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(600)
def test_a_training_job_with_two_gpus_trains_with_two_processes(slurm, tmp_path):
    config = load_config("sample", [f"run.root={tmp_path}", "sample.pairs=16", "sample.width=128", "sample.height=96",
                                    "fusion.methods=[s4fusion]", "fusion.train.epochs=1", "fusion.train.crop=49",
                                    "fusion.train.batch_size=2", "run.executor=slurm", "executor.gpus.train=2",
                                    "executor.cpus.train=1", "executor.mem_gb.train=0", "executor.time.train=10",
                                    "executor.poll_s=1", f"executor.setup=[export PYTHONPATH={REPO}]"])
    prepare_from_config(config)
    state = GridState(run_layout(config).grid.state, submit(config, [j for j in plan(config) if j.kind == "train"]))
    wait(state, 1)
    (task,) = state.tasks
    assert task.state == "done", (task.detail, Path(task.log).read_text()[-2000:])
    assert task.info["gpus"] == "0,1" or len(task.info["gpus"].split(",")) == 2
    assert "batch 1 x 2 process(es)" in Path(task.log).read_text()
    assert run_layout(config).fusion("s4fusion").best.is_file()
