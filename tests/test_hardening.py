"""Issue #22's observations outside the freshness rule: no code from checkpoints, inputs never outputs,
damaged inputs, the schema, SIGTERM, one-line user errors in run-all, and performance knobs outside
every identity. Each test failed on the code before its fix."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from detection.offline import use_offline_ultralytics
from detection.yolo import (
    CheckpointRefusedError,
    TrainSettings,
    load_checkpoint,
    model_source,
    read_selection,
    select,
    train,
    training_finished,
    write_data_yaml,
)
from pipelines.benchmark import Benchmark
from pipelines.cli import cli
from pipelines.config import load_config
from pipelines.fuse import fuse_method


class RunsCommand:
    """A pickle that creates ``marker`` when it is loaded by an unrestricted unpickler."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def plant_pickle(path: Path, marker: Path) -> Path:
    """A checkpoint-shaped file whose loading would run a command."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": 0, "model": RunsCommand(marker)}, path)
    return path


def refused(path: Path) -> str:
    return f"{path}: refused to load: it names posix.system"


def fused_copy(benchmark: Benchmark, folder: Path, method: str = "vi") -> tuple[Benchmark, Path]:
    """A private copy of ``benchmark`` with ``method`` fused, and its sample config file."""
    root = folder / "benchmark"
    shutil.copytree(benchmark.root, root, ignore=shutil.ignore_patterns("fused", "*.cache"))
    config_file = folder / "run.yaml"
    config_file.write_text(f"extends: sample\nrun: {{root: {folder / 'runs'}, name: t}}\n"
                           f"data: {{benchmark: {root}}}\nfusion: {{workers: 1}}\n")
    fuse_method(load_config(config_file), method, progress=False)
    return Benchmark(root), config_file


@pytest.fixture(scope="module")
def tiny_detector(sample_benchmark: Benchmark, tmp_path_factory) -> tuple[Path, Path, Path]:
    """One epoch of YOLOv5s at 64 px on the sample's `vi` set: (data.yaml, training folder, config file)."""
    work = tmp_path_factory.mktemp("tiny_detector")
    bench, config_file = fused_copy(sample_benchmark, work)
    use_offline_ultralytics(work / "ultralytics")
    data = write_data_yaml(work / "data.yaml", bench.fused_dir("vi"), bench.classes)
    train_dir = train(data, work / "train", "yolov5s.yaml", TINY)
    return data, train_dir, config_file


TINY = TrainSettings(epochs=1, imgsz=64, batch=4, workers=0, seed=0, device="cpu")


# --- 1. no unpickling of code -------------------------------------------------------------------

def test_a_real_detector_checkpoint_loads_through_the_restricted_loader(tiny_detector):
    from ultralytics import YOLO
    from ultralytics.nn import tasks

    data, train_dir, _ = tiny_detector
    assert tasks.SAFE_LOAD  # every ultralytics load of this process is restricted
    assert training_finished(train_dir / "weights" / "last.pt")
    assert read_selection(train_dir / "weights" / "best_map50.pt")["epoch"] == 1
    classes = list(yaml.safe_load(data.read_text())["names"].values())
    assert list(YOLO(str(train_dir / "weights" / "best_map50.pt")).names.values()) == classes


@pytest.mark.parametrize("planted", ["last.pt", "best_map50.pt"])
def test_a_planted_detector_checkpoint_runs_nothing_and_is_refused(tiny_detector, tmp_path: Path, planted: str):
    """Observation High 1: a planted last.pt or best_map50.pt ran a command when the run was resumed or evaluated."""
    data, train_dir, _ = tiny_detector
    copy = shutil.copytree(train_dir, tmp_path / "train")
    marker = tmp_path / "ran"
    path = plant_pickle(copy / "weights" / planted, marker)
    with pytest.raises(CheckpointRefusedError, match=refused(path)):
        if planted == "last.pt":
            train(data, copy, "yolov5s.yaml", TINY)
        else:
            select(copy, "map50")
    assert not marker.exists()
    assert path.is_file()  # refused, not deleted as if it were merely damaged


def test_foreign_detector_weights_run_nothing(tiny_detector, tmp_path: Path):
    """Observation High 1: `-s detect.weights=FILE` with a malicious FILE ran a command in ultralytics' loader."""
    from ultralytics import YOLO

    _, _, config_file = tiny_detector
    marker = tmp_path / "ran"
    weights = plant_pickle(tmp_path / "weights.pt", marker)
    result = CliRunner().invoke(cli, ["detect", "-c", str(config_file), "-m", "vi", "-s", f"detect.weights={weights}"])
    assert result.exit_code == 1 and refused(weights) in result.output
    with pytest.raises(CheckpointRefusedError, match=refused(weights)):
        model_source(weights, allow_scratch=False)
    with pytest.raises(TypeError, match="references types outside"):  # ultralytics' own loader, restricted too
        YOLO(str(weights))
    with pytest.raises(CheckpointRefusedError):
        load_checkpoint(weights)
    assert not marker.exists()


def test_learned_fuser_and_resnet50_loaders_run_nothing(tmp_path: Path):
    from fusion.learned.checkpoint import CheckpointError, read_payload
    from fusion.perception import WeightsError, build_resnet50

    marker = tmp_path / "ran"
    path = plant_pickle(tmp_path / "model.pkl", marker)
    with pytest.raises(CheckpointError, match=refused(path)):
        read_payload(path)
    with pytest.raises(WeightsError, match=refused(path)):
        build_resnet50(weights=path)
    assert not marker.exists()
