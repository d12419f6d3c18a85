"""S4Fusion on the learned-fuser trainer: learning-rate schedule, exact resume, and `pipelines train-fusion`
end to end on a tiny prepared sample (a small model at 49x49 crops, so it runs in seconds on a CPU)."""
from __future__ import annotations

import csv
import math

import pytest
import torch
from click.testing import CliRunner

from fusion.learned.architecture import learned_method
from fusion.learned.checkpoint import load_checkpoint
from fusion.learned.schedules import step_decay, warmup_cosine
from fusion.learned.trainer import Trainer, TrainingError, TrainSettings
from fusion.perception import build_resnet50
from fusion.s4fusion.architecture import S4FUSION
from fusion.s4fusion.losses import LossSettings
from pipelines.cli import cli
from pipelines.train_fusion import as_train_pairs

TINY = dict(dims=(8, 16, 32), depths=(1, 1, 1), depths_decoder=(1, 1, 1), fusion_depth=1, d_state=4, d_state_fusion=4)
TINY_FLAG = "methods.s4fusion.model={dims: [8, 16, 32], depths: [1, 1, 1], depths_decoder: [1, 1, 1], " \
            "fusion_depth: 1, d_state: 4, d_state_fusion: 4}"


@pytest.fixture(scope="module")
def perception():
    return build_resnet50(allow_random=True)[0]


@pytest.fixture(scope="module")
def tiny_benchmark(tmp_path_factory):
    """Six synthetic pairs at 64x64 prepared 7:1:2 (4 train, 1 val, 1 test)."""
    from pipelines.prepare import prepare_benchmark
    from pipelines.sample import make_sample

    root = tmp_path_factory.mktemp("tiny")
    return prepare_benchmark(make_sample(root / "raw", pairs=6, width=64, height=64, seed=0), root / "benchmark")


def test_warmup_cosine_schedule():
    lr = [warmup_cosine(s, total=100, warmup=10, start=3e-4, peak=1.5e-3, end=6e-4) for s in range(101)]
    assert lr[0] == pytest.approx(3e-4) and lr[5] == pytest.approx(9e-4) and lr[10] == pytest.approx(1.5e-3)
    assert lr[55] == pytest.approx((1.5e-3 + 6e-4) / 2) and lr[100] == pytest.approx(6e-4)
    assert all(a >= b for a, b in zip(lr[10:], lr[11:])) and min(lr[10:]) >= 6e-4 - 1e-12


def test_step_schedule():
    lr = [step_decay(s, every=20, gamma=0.5, peak=1e-4) for s in (0, 19, 20, 39, 40, 100)]
    assert lr == pytest.approx([1e-4, 1e-4, 5e-5, 5e-5, 2.5e-5, 1e-4 / 32])


def test_resume_gives_identical_weights(sample_benchmark, perception, tmp_path):
    pairs = as_train_pairs(sample_benchmark.pairs("train"))[:2]
    settings = TrainSettings(epochs=2, batch_size=2, crop=49, workers=0, warmup_epochs=1)
    config, loss = learned_method("s4fusion").make_config(**TINY), LossSettings(stages=("stem",))

    def trainer(folder: str, config=config, pairs=pairs, settings=settings) -> Trainer:
        return Trainer(S4FUSION, config, loss, pairs, [], tmp_path / folder, settings, method="s4fusion",
                       perception=perception)

    straight = trainer("straight")
    straight.fit()
    trainer("split").fit(until_epoch=1)
    resumed = trainer("split")
    assert resumed.epoch == 1 and not resumed.finished
    resumed.fit()
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = [(tmp_path / f / "loss.csv").read_text() for f in ("straight", "split")]
    assert rows[0] == rows[1] and len(rows[0].splitlines()) == 3  # header + one step per epoch
    fresh = trainer("fresh")
    assert not all(torch.equal(fresh.model.state_dict()[k], a[k]) for k in a)  # training changed the weights
    with pytest.raises(TrainingError, match="another architecture"):
        trainer("split", config=learned_method("s4fusion").make_config(**{**TINY, "dims": (12, 24, 48)}))
    with pytest.raises(TrainingError, match="training pairs or seed changed"):
        trainer("split", pairs=pairs[:1])
    with pytest.raises(TrainingError, match="crop 50 is not a valid s4fusion size.*61"):
        trainer("bad", settings=TrainSettings(crop=50))


@pytest.fixture(scope="module")
def trained(tiny_benchmark, tmp_path_factory):
    """One epoch of `pipelines train-fusion` on the tiny benchmark: (cli args, run folder, first result)."""
    root = tmp_path_factory.mktemp("runs")
    args = ["-c", "sample", "-s", f"run.root={root}", "-s", "run.name=t", "-s", f"data.benchmark={tiny_benchmark.root}",
            "-s", "fusion.train.crop=49", "-s", "methods.s4fusion.loss.stages=[stem]", "-s", TINY_FLAG]
    result = CliRunner().invoke(cli, ["train-fusion", *args, "--epochs", "1", "--batch-size", "2"])
    return args, root / "t", result


def test_train_fusion_command_writes_every_output(trained):
    args, run, result = trained
    assert result.exit_code == 0, result.output
    out = run / "fusion" / "s4fusion"
    assert {p.name for p in out.iterdir()} >= {"last.pt", "best.pt", "loss.csv", "val.csv", "delta.csv", "loss_curve.png"}
    with (out / "delta.csv").open() as handle:  # paper Table VIII: mean Delta per scan layer and modality
        deltas = list(csv.DictReader(handle))
    assert {r["stream"] for r in deltas} == {"ir", "vi", "fused"} and {r["epoch"] for r in deltas} == {"1"}
    assert all(float(r["mean_delta"]) > 0 for r in deltas)
    with (out / "loss.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 and all(math.isfinite(float(r[k])) for r in rows for k in ("total", "per", "l1", "ssim", "grad"))
    assert all(float(r["w_ir"]) + float(r["w_vi"]) == pytest.approx(1.0, abs=1e-5) for r in rows)
    model, _, _, payload = load_checkpoint(out / "best.pt")
    assert model.config.dims == (8, 16, 32) and payload["method"] == "s4fusion" and payload["epoch"] == 1
    assert payload["perception"]["kind"] == "random" and math.isfinite(payload["val_loss"])
    assert "perception network: random" in (run / "logs" / "train-fusion.log").read_text()

    # A finished training is skipped on rerun.
    before = (out / "last.pt").stat().st_mtime_ns
    result = CliRunner().invoke(cli, ["train-fusion", *args, "--epochs", "1"])
    assert result.exit_code == 0 and (out / "last.pt").stat().st_mtime_ns == before
    assert "already trained" in (run / "logs" / "train-fusion.log").read_text()


def test_pipelines_fuse_loads_the_trained_checkpoint(trained, tiny_benchmark):
    args, _, first = trained
    assert first.exit_code == 0, first.output
    result = CliRunner().invoke(cli, ["fuse", *args, "--method", "s4fusion"])
    assert result.exit_code == 0, result.output
    assert len(list(tiny_benchmark.fused_dir("s4fusion").glob("images/*/*.png"))) == 6


def test_refuses_to_start_without_perception_weights(tiny_benchmark, tmp_path):
    result = CliRunner().invoke(cli, ["train-fusion", "-c", "sample", "-s", f"run.root={tmp_path}",
                                      "-s", f"data.benchmark={tiny_benchmark.root}", "-s", "perception.allow_random=false"])
    assert result.exit_code != 0 and "no ResNet50 weights" in result.output and "allow_random" in result.output
    assert not (tmp_path / "sample" / "fusion" / "s4fusion" / "last.pt").exists()
