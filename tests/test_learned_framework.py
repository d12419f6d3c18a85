"""The learned-fuser framework with a toy architecture registered from this file alone: stages and
parameter groups, exact resume across a stage boundary, the fp16/RNG/precision defects of issue #14,
checkpoints and converters, option validation, inference padding and min-max output."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from runs import MODEL
from torch import nn

from fusion.color import luminance
from fusion.learned import precision, state
from fusion.learned import trainer as trainer_module
from fusion.learned.architecture import (
    Architecture,
    Converter,
    LearnedMethod,
    OptionsError,
    Stage,
    build_options,
    register_architecture,
    register_method,
)
from fusion.learned.checkpoint import CheckpointError, checkpoint_identity, load_checkpoint, save_checkpoint
from fusion.learned.data import folder_pairs
from fusion.learned.trainer import Trainer, TrainingError, TrainSettings
from fusion.registry import build_fuser, is_learned, method_info, validate_method_options
from fusionbench.images import write_image


@dataclass(frozen=True)
class ToyConfig:
    width: int = 4
    multiple: int = 4  # valid sides are multiples of this, so inference has to pad


class ToyNet(nn.Module):
    """Encoder -> (fusion layer in the "fuse" stage only) -> decoder; a sigmoid output."""

    def __init__(self, config: ToyConfig):
        super().__init__()
        self.config = config
        self.encoder = nn.Conv2d(2, config.width, 3, padding=1)
        self.fusion = nn.Conv2d(config.width, config.width, 1)
        self.decoder = nn.Conv2d(config.width, 1, 3, padding=1)

    def forward(self, ir: torch.Tensor, vi: torch.Tensor, stage: str = "fuse") -> torch.Tensor:
        assert ir.shape[-1] % self.config.multiple == 0 and ir.shape[-2] % self.config.multiple == 0
        h = F.relu(self.encoder(torch.cat((ir, vi), dim=1)))
        if stage == "fuse":
            h = h + self.fusion(h)
        return torch.sigmoid(self.decoder(h))


@dataclass(frozen=True)
class ToyLoss:
    l1: float = 1.0


class ToyObjective(nn.Module):
    terms = ("total", "l1")
    diagnostics = ("target_mean",)

    def __init__(self, settings: ToyLoss):
        super().__init__()
        self.settings = settings

    def forward(self, net, ir, vi, stage):
        target = torch.maximum(ir, vi)
        l1 = (net(ir, vi, stage=stage) - target).abs().mean()
        return {"total": self.settings.l1 * l1, "l1": l1, "target_mean": target.flatten(1).mean(1)}


def _from_foreign(payload):
    return {"width": payload["weights"]["encoder.weight"].shape[0]}, dict(payload["weights"])


TOY = register_architecture(Architecture(
    name="toy", config=ToyConfig, build=ToyNet,
    next_valid_size=lambda config, side: -(-side // config.multiple) * config.multiple,
    loss=ToyLoss, build_objective=lambda loss, perception: ToyObjective(loss), default_crop=16,
    stages=(Stage("warm", groups=("codec",), share=0.5), Stage("fuse")),
    param_groups=lambda model: {"codec": ("encoder.", "decoder."), "fusion": ("fusion.",)},
    converters=(Converter("a toy release ({'weights': state_dict})", lambda p: "weights" in p, _from_foreign),),
))
register_method(LearnedMethod("toy", "toy"))
register_method(LearnedMethod("toy_wide", "toy", model={"width": 6}, train={"lr_peak": 1e-2}))

SETTINGS = TrainSettings(epochs=2, batch_size=2, crop=16, workers=0, lr_start=1e-2, lr_peak=1e-2, lr_end=1e-3,
                         warmup_epochs=0, seed=3)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """Three random 20x24 pairs on disk (the loader reads files)."""
    root = tmp_path_factory.mktemp("pairs")
    rng = np.random.default_rng(0)
    for i in range(3):
        write_image(root / "ir" / f"{i}.png", rng.integers(0, 256, (20, 24), dtype=np.uint8))
        write_image(root / "vi" / f"{i}.png", rng.integers(0, 256, (20, 24, 3), dtype=np.uint8))
    return folder_pairs(root)


def toy_trainer(pairs, out: Path, settings: TrainSettings = SETTINGS, **kwargs) -> Trainer:
    return Trainer(TOY, ToyConfig(), ToyLoss(), pairs[:2], pairs[2:], out, settings, method="toy", **kwargs)


def _weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


def test_each_stage_updates_only_its_parameter_groups(pairs, tmp_path):
    trainer = toy_trainer(pairs, tmp_path / "run")
    start = _weights(trainer)
    trainer.fit(until_epoch=1)
    warm = _weights(trainer)
    assert not torch.equal(warm["encoder.weight"], start["encoder.weight"])
    assert not torch.equal(warm["decoder.weight"], start["decoder.weight"])
    assert torch.equal(warm["fusion.weight"], start["fusion.weight"]) and torch.equal(warm["fusion.bias"], start["fusion.bias"])
    assert trainer.stage.name == "fuse"
    trainer.fit()
    assert not torch.equal(trainer.model.state_dict()["fusion.weight"], warm["fusion.weight"])
    # Each group's schedule starts with its first stage: the fusion group is at the start of its schedule.
    factors = [f(trainer.steps_per_epoch) for f in trainer.scheduler.lr_lambdas]
    assert factors[0] < 1.0 and factors[1] == pytest.approx(1.0)
    with (tmp_path / "run" / "loss.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["epoch", "step", "lr", "total", "l1", "target_mean"] and len(rows) == 2
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["stage"] == "fuse"


def test_resume_across_the_stage_boundary_is_bit_identical(pairs, tmp_path):
    straight = toy_trainer(pairs, tmp_path / "straight")
    straight.fit()
    toy_trainer(pairs, tmp_path / "split").fit(until_epoch=1)
    resumed = toy_trainer(pairs, tmp_path / "split")
    assert resumed.epoch == 1 and resumed.stage.name == "fuse"
    resumed.fit()
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "straight" / "loss.csv").read_text() == (tmp_path / "split" / "loss.csv").read_text()
    with pytest.raises(TrainingError, match="another architecture"):
        Trainer(TOY, ToyConfig(width=5), ToyLoss(), pairs[:2], pairs[2:], tmp_path / "split", SETTINGS, method="toy")


@pytest.mark.parametrize("stop_at", ["best.pt", "last.pt", "loss.csv"])
def test_a_job_stopped_anywhere_in_an_epochs_end_resumes_to_the_uninterrupted_files(pairs, tmp_path, monkeypatch,
                                                                                     stop_at):
    """A requeued SLURM job exits wherever its warning arrives (SystemExit from the signal handler): here
    in the last of 12 epochs, before writing best.pt (that epoch improved on the stage's best), before
    last.pt, or one character into a row of loss.csv (the "1" of "12,..."). The resumed run's
    checkpoints and logs equal a straight run's."""
    settings = TrainSettings(**{**vars(SETTINGS), "epochs": 12})
    straight = tmp_path / "straight"
    toy_trainer(pairs, straight, settings).fit()

    save, append = trainer_module.save_checkpoint, Trainer._append_csv

    def saving(path, *args, **state):
        if Path(path).name == stop_at and state["epoch"] == settings.epochs:
            raise SystemExit(-1)
        save(path, *args, **state)

    def appending(self, path, columns, rows):
        if path.name == stop_at and rows[0]["epoch"] == settings.epochs:
            with path.open("a") as handle:
                handle.write(str(settings.epochs)[0])
            raise SystemExit(-1)
        append(self, path, columns, rows)

    monkeypatch.setattr(trainer_module, "save_checkpoint", saving)
    monkeypatch.setattr(Trainer, "_append_csv", appending)
    with pytest.raises(SystemExit):
        toy_trainer(pairs, tmp_path / "stopped", settings).fit()
    monkeypatch.undo()
    resumed = toy_trainer(pairs, tmp_path / "stopped", settings)
    assert resumed.epoch == settings.epochs - 1
    resumed.fit()
    for name in ("best.pt", "last.pt"):
        assert checkpoint_identity(straight / name) == checkpoint_identity(tmp_path / "stopped" / name), name
    for name in ("loss.csv", "val.csv"):
        assert (straight / name).read_text() == (tmp_path / "stopped" / name).read_text(), name


def test_a_resume_on_another_cpu_thread_count_says_its_results_will_differ(pairs, tmp_path, caplog):
    """torch's CPU reductions depend on the thread count (a SLURM job may get fewer CPUs than the first run)."""
    toy_trainer(pairs, tmp_path / "run").fit(until_epoch=1)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)
        toy_trainer(pairs, tmp_path / "run")
    finally:
        torch.set_num_threads(threads)
    assert f"resuming on {threads + 1} CPU threads, the checkpoint was written on {threads}" in caplog.text
    caplog.clear()
    toy_trainer(pairs, tmp_path / "run")
    assert "CPU threads" not in caplog.text


def test_stage_epochs_and_crop_are_checked(pairs, tmp_path):
    with pytest.raises(TrainingError, match="expected 1 number"):
        toy_trainer(pairs, tmp_path / "a", TrainSettings(epochs=2, crop=16, stage_epochs=(1, 1)))
    with pytest.raises(TrainingError, match="the last one starts after all 2 epochs"):
        toy_trainer(pairs, tmp_path / "b", TrainSettings(epochs=2, crop=16, stage_epochs=(2,)))
    with pytest.raises(TrainingError, match="crop 18 is not a valid toy size.*20"):
        toy_trainer(pairs, tmp_path / "c", TrainSettings(epochs=2, crop=18))
    assert toy_trainer(pairs, tmp_path / "d", TrainSettings(epochs=2, workers=0)).crop == TOY.default_crop


def test_fp16_resume_of_a_checkpoint_saved_without_loss_scaling(pairs, tmp_path):
    """Issue #14: the empty GradScaler state of a run without fp16 crashed an fp16 resume."""
    toy_trainer(pairs, tmp_path / "run").fit(until_epoch=1)
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["scaler"] == {}
    resumed = toy_trainer(pairs, tmp_path / "run", TrainSettings(**{**vars(SETTINGS), "amp": "fp16"}))
    assert resumed.epoch == 1 and resumed.scaler.is_enabled()
    resumed.fit()
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["scaler"]["scale"] > 0


def test_automatic_precision_follows_the_gpu_generation(monkeypatch):
    cuda = torch.device("cuda", 0)
    for capability, choice in (((9, 0), "bf16"), ((8, 0), "bf16"), ((7, 5), "fp16"), ((7, 0), "fp16"), ((6, 1), "none")):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, c=capability: c)
        assert precision.automatic_amp(cuda) == choice
    assert precision.amp_dtype(None, torch.device("cpu")) is None
    assert precision.amp_dtype("fp16", torch.device("cpu")) is torch.float16
    with pytest.raises(precision.PrecisionError, match="'fp8'"):
        precision.amp_dtype("fp8", cuda)


def test_rng_state_holds_only_the_training_gpu(monkeypatch):
    """Issue #14: all visible GPUs' states were saved, so a resume with fewer GPUs crashed."""
    asked, restored = [], []
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": asked.append(device) or torch.zeros(8, dtype=torch.uint8))
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda value, device="cuda": restored.append(device))
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: pytest.fail("every GPU's state was read"))
    saved = state.rng_state(torch.device("cuda", 3))
    assert asked == [torch.device("cuda", 3)] and saved["cuda"].shape == (8,)
    state.set_rng_state(saved, torch.device("cuda", 0))  # the machine that resumes has one GPU
    assert restored == [torch.device("cuda", 0)]
    state.set_rng_state(saved, torch.device("cpu"))  # a CPU resume ignores the GPU state
    assert restored == [torch.device("cuda", 0)] and "cuda" not in state.rng_state(torch.device("cpu"))


def test_checkpoints_rebuild_any_architecture_and_converters_read_foreign_files(tmp_path):
    torch.manual_seed(0)
    config = ToyConfig(width=3)
    model = ToyNet(config).eval()
    save_checkpoint(tmp_path / "toy.pt", TOY, config, model, epoch=4)
    loaded, loaded_config, arch, payload = load_checkpoint(tmp_path / "toy.pt")
    assert arch is TOY and loaded_config == config and payload["epoch"] == 4
    ir, vi = torch.rand(1, 1, 8, 12), torch.rand(1, 1, 8, 12)
    with torch.no_grad():
        assert torch.equal(loaded(ir, vi), model(ir, vi))
    torch.save({"weights": model.state_dict()}, tmp_path / "release.pth")
    assert load_checkpoint(tmp_path / "release.pth")[1] == config
    torch.save({"format": "fusionbench.learned/1", "arch": "toyy", "config": {}, "state_dict": {}}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="x.pt: unknown architecture 'toyy' \\(did you mean 'toy'"):
        load_checkpoint(tmp_path / "x.pt")
    torch.save({"weights": {"encoder.weight": torch.zeros(3, 2, 3, 3)}}, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError, match="(?s)broken.pth: weights do not fit the toy model.*missing \\(5\\)"):
        load_checkpoint(tmp_path / "broken.pth")


def test_registry_metadata_and_option_validation():
    assert is_learned("toy") and not is_learned("average")
    assert method_info("toy_wide").arch == "toy" and method_info("toy_wide").default_crop == 16
    assert not method_info("gff").learned
    options = {"weights": "w.pt", "output": "minmax", "model": {"width": 2}, "train": {"epochs": 3}}
    assert validate_method_options("toy", options) == options
    with pytest.raises(OptionsError, match="'widht' \\(did you mean 'width'\\?\\)"):
        validate_method_options("toy", {"model": {"widht": 2}})
    with pytest.raises(OptionsError, match="'lr_pek' \\(did you mean 'lr_peak'"):
        validate_method_options("toy", {"train": {"lr_pek": 1}})
    with pytest.raises(OptionsError, match="'device'"):
        validate_method_options("toy", {"device": "cpu"})
    with pytest.raises(OptionsError, match="gff: unknown option 'r3'; it takes: r1, eps1, r2, eps2, name"):
        validate_method_options("gff", {"r3": 3})
    # YAML reads -s methods.toy.train.lr_peak=2e-3 as the string '2e-3': converted to the field's type
    # when the settings are built, and a value that is no number is an error naming key and value
    assert build_options(TrainSettings, {"lr_peak": "2e-3", "epochs": "3"}, "toy.train").lr_peak == 0.002
    with pytest.raises(OptionsError, match="toy.train: lr_peak = 'fast': Input should be a valid number"):
        validate_method_options("toy", {"train": {"lr_peak": "fast"}})
    with pytest.raises(OptionsError, match="toy.model: .*width"):
        validate_method_options("toy", {"model": {"width": "wide"}})


def test_inference_pads_to_valid_sizes_and_normalises_per_image(tmp_path):
    torch.manual_seed(1)
    config = ToyConfig()
    model = ToyNet(config).eval()
    save_checkpoint(tmp_path / "toy.pt", TOY, config, model)
    rng = np.random.default_rng(1)
    ir, vi = rng.random((10, 13), dtype=np.float32), rng.random((10, 13, 3), dtype=np.float32)
    clamp = build_fuser("toy", weights=tmp_path / "toy.pt", device="cpu")
    minmax = build_fuser("toy", weights=tmp_path / "toy.pt", device="cpu", output="minmax")
    y = luminance(vi)
    # Independent reference: reflect-pad by hand to 12x16, run the network, crop, normalise in float64.
    padded = [np.pad(a, ((0, 2), (0, 3)), mode="reflect") for a in (ir, y)]
    with torch.no_grad():
        raw = model(*(torch.from_numpy(a)[None, None] for a in padded))[0, 0, :10, :13].double().numpy()
    expected = (raw - raw.min()) / (raw.max() - raw.min())
    assert np.abs(minmax.fuse_luminance([(ir, y)])[0] - expected).max() < 1e-6
    assert np.abs(clamp.fuse_luminance([(ir, y)])[0] - raw).max() < 1e-6
    assert clamp(ir, vi).shape == (10, 13, 3) and clamp(ir, vi).dtype == np.uint8


def test_toy_method_runs_through_train_fusion_fuse_detect_and_report(tmp_path):
    """The toy architecture registered above goes through every stage with no edit to pipelines/."""
    from click.testing import CliRunner

    from pipelines.cli import cli
    from pipelines.prepare import prepare_benchmark
    from pipelines.sample import make_sample

    bench = prepare_benchmark(make_sample(tmp_path / "raw", pairs=10, width=96, height=72, seed=0), tmp_path / "bench")
    args = ["-c", "sample", "-s", f"run.root={tmp_path / 'runs'}", "-s", "run.name=toy", "-s", f"report.dir={tmp_path / 'report'}",
            "-s", f"data.benchmark={bench.root}", "-s", "fusion.methods=[vi, toy]", "-s", "fusion.train.epochs=2",
            "-s", "fusion.train.batch_size=2", "-s", "fusion.train.crop=null", "-s", "methods.toy.model={width: 3}",
            "-s", "methods.toy.output=minmax", "-s", "detect.epochs=1", "-s", "detect.imgsz=64", "-s", "detect.batch=4",
            "-s", "metrics.entropy=false", "-s", "report.qualitative=1"]
    for command in (["train-fusion", "--method", "toy"], ["fuse", "--method", "toy"], ["fuse", "--method", "vi"],
                    ["detect", "--method", "toy"], ["detect", "--method", "vi"], ["metrics"], ["report"]):
        result = CliRunner().invoke(cli, [*command, *args])
        assert result.exit_code == 0, (command, result.output)
    run = tmp_path / "runs" / "toy"
    model, config, arch, payload = load_checkpoint(run / "fusion" / "toy" / "best.pt")
    assert arch is TOY and config == ToyConfig(width=3) and payload["epoch"] == 2 and payload["stage"] == "fuse"
    fused = sorted(bench.fused_dir("toy").glob("images/*/*.png"))
    assert len(fused) == 10
    assert (run / "detection" / MODEL / "toy" / "seed0" / "results.json").is_file()
    html = (tmp_path / "report" / "index.html").read_text()
    assert "toy" in html
    # how the learned set was computed, as its fuse manifest recorded it (not the report machine's state)
    numerics = html[html.index("Learned fusers' numerics"):].split("</table>")[0]
    assert "<td>toy</td><td>device cpu, scan_backend cpu</td>" in numerics and ">vi<" not in numerics
    # and which network: methods.toy.model shrank it, which the report says beside the parameter count
    networks = html[html.index("Learned fusers' networks"):].split("</table>")[0]
    parameters = sum(p.numel() for p in ToyNet(ToyConfig(width=3)).parameters())
    assert (f"<td>toy</td><td>{parameters:,} parameters; architecture changed from the registry entry: width 3 (registered: 4)</td>"
            in networks) and ">vi<" not in networks


DDP_SCRIPT = """
import importlib.util, sys
from pathlib import Path
spec = importlib.util.spec_from_file_location("toy_framework_test", {test_file!r})
toy = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(toy)  # registers the toy architecture, as the test file does
from fusion.learned.data import folder_pairs
from pipelines.schema import Config
from pipelines.train_fusion import training_device
import torch
pairs = folder_pairs({pairs!r})
for attempt in range(2):  # a second training in the same process (run-all) uses the same group
    device = training_device(Config())
    trainer = toy.toy_trainer(pairs, Path({out!r}) / f"ddp{{attempt}}", device=device, resume=False)
    assert trainer.world == 2 and isinstance(trainer.net, torch.nn.parallel.DistributedDataParallel)
    trainer.fit()
"""


def test_ddp_training_with_a_stage_that_leaves_parameters_unused(pairs, tmp_path):
    """torchrun with two CPU processes (gloo) trains the toy across its stage boundary; the "warm" stage
    never uses the fusion layer, so DDP must allow unused parameters. Averaged gradients over 2 x 1
    images equal one process's gradient over the same 2 images."""
    import os
    import subprocess
    import sys

    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT.format(test_file=__file__, pairs=str(pairs[0].ir.parents[1]), out=str(tmp_path)))
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}  # nothing of this process
    tests, root = str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])  # the tests' helpers
    env.update(PYTHONPATH=os.pathsep.join(filter(None, (tests, root, os.environ.get("PYTHONPATH")))), OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                             str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    single = toy_trainer(pairs, tmp_path / "single")
    single.fit()
    for attempt in range(2):
        ddp = load_checkpoint(tmp_path / f"ddp{attempt}" / "last.pt")[0].state_dict()
        assert all(torch.allclose(ddp[k], v, atol=1e-5) for k, v in single.model.state_dict().items())


def test_training_settings_precedence():
    """Schema defaults < the method's recipe < fusion.train set by the config < methods.<m>.train."""
    from fusion.learned.architecture import learned_method
    from pipelines.config import load_config
    from pipelines.train_fusion import train_settings

    wide = learned_method("toy_wide")  # its recipe: lr_peak 1e-2
    assert train_settings(load_config("paper"), wide).lr_peak == 1e-2
    assert train_settings(load_config("paper"), learned_method("toy")).lr_peak == 1.5e-3  # the schema default
    config = load_config("paper", ["fusion.train.lr_peak=0.02", "fusion.train.epochs=3", "methods.toy_wide.train={epochs: 5}",
                                   "run.seed=4"])
    settings = train_settings(config, wide)
    assert (settings.lr_peak, settings.epochs, settings.seed, settings.batch_size) == (0.02, 5, 4, 20)
