"""YOLOv5s training offline on the CPU: the CLI stage on the sample, resume, skip and selection on real MSRS.

Kept tiny (imgsz 128, 1-2 epochs, 14-17 training images, no pre-trained weights): the scores are near zero
and the tests check the mechanics, files and conventions, not detector quality.
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from network import network_refused
from runs import detect_method, detect_seed, detector, unit_files

from detection.coco_eval import evaluate, load_ground_truth
from detection.task import MODELS, DetectError, protocol_settings, train_settings
from detection.yolo import (
    MAP50_KEY,
    SCRATCH_CONFIG,
    Map50Keeper,
    TrainSettings,
    model_source,
    read_selection,
    select,
    train,
    val_curve,
    write_data_yaml,
)
from fusionbench.benchmark import Benchmark
from fusionbench.fused_set import FusedSetError, check_fused_set
from fusionbench.ultralytics_offline import cpu_threads, training_finished, use_offline_ultralytics
from pipelines.cli import cli
from pipelines.config import ConfigError, load_config, run_layout
from pipelines.downstream import DownstreamError
from pipelines.fuse import fuse_method

TINY = TrainSettings(epochs=2, imgsz=128, batch=4, workers=0, seed=0, device="cpu")


def fused_copy(benchmark: Benchmark, folder: Path, methods: tuple[str, ...]) -> Benchmark:
    """A private copy of ``benchmark`` with the fused sets of ``methods`` written by the fuse stage."""
    root = folder / "benchmark"
    shutil.copytree(benchmark.root, root, ignore=shutil.ignore_patterns("fused", "*.cache"))
    config = load_config("sample", [f"data.benchmark={root}", "fusion.workers=1"])
    for method in methods:
        fuse_method(config, method, progress=False)
    return Benchmark(root)


@pytest.fixture(scope="module")
def msrs_fused(msrs_benchmark: Benchmark, tmp_path_factory) -> Benchmark:
    """The real MSRS pairs with the `vi` fused set."""
    return fused_copy(msrs_benchmark, tmp_path_factory.mktemp("msrs_fused"), ("vi",))


@pytest.fixture(scope="module")
def sample_fused(sample_benchmark: Benchmark, tmp_path_factory) -> Benchmark:
    """The synthetic sample with the `ir` and `vi` fused sets."""
    return fused_copy(sample_benchmark, tmp_path_factory.mktemp("sample_fused"), ("ir", "vi"))


@pytest.fixture(scope="module")
def resumed_run(msrs_fused: Benchmark, tmp_path_factory) -> SimpleNamespace:
    """Two epochs on `vi`, interrupted after the first, then resumed, then called once more (finished)."""
    work = tmp_path_factory.mktemp("resume")
    with network_refused() as attempts:
        use_offline_ultralytics(work / "ultralytics")
        data = write_data_yaml(work / "data.yaml", msrs_fused.fused_dir("vi"), msrs_fused.classes)
        train_dir, last = work / "train", work / "train" / "weights" / "last.pt"

        def interrupt_after_first_epoch(trainer):
            if trainer.epoch == 0:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            train(data, train_dir, SCRATCH_CONFIG, TINY, callbacks={"on_fit_epoch_end": interrupt_after_first_epoch})
        interrupted = SimpleNamespace(finished=training_finished(last),
                                      selection=read_selection(train_dir / "weights" / "best_map50.pt"))
        train(data, train_dir, SCRATCH_CONFIG, TINY)
        stamp = last.stat().st_mtime_ns
        train(data, train_dir, SCRATCH_CONFIG, TINY)
    return SimpleNamespace(train_dir=train_dir, last=last, interrupted=interrupted, stamp=stamp, attempts=attempts)


def test_interrupted_training_resumes_and_a_finished_one_is_skipped(resumed_run):
    assert not resumed_run.interrupted.finished
    assert resumed_run.interrupted.selection["epoch"] == 1
    assert training_finished(resumed_run.last)
    rows = pd.read_csv(resumed_run.train_dir / "results.csv")
    assert rows["epoch"].tolist() == [1, 2]  # epoch 1 was not trained again
    assert [row["epoch"] for row in val_curve(resumed_run.train_dir)] == [1, 2]
    assert resumed_run.last.stat().st_mtime_ns == resumed_run.stamp  # the third call trained nothing
    assert resumed_run.attempts == []


def test_selection_by_val_map50_or_by_ultralytics_fitness(resumed_run):
    curve = val_curve(resumed_run.train_dir)
    by_map50 = select(resumed_run.train_dir, "map50")
    assert by_map50.weights.name == "best_map50.pt"
    assert by_map50.epoch == 1 + int(np.argmax([row["map50"] for row in curve]))
    by_fitness = select(resumed_run.train_dir, "fitness")
    assert by_fitness.weights.name == "best.pt" and by_fitness.weights.is_file()
    assert by_fitness.epoch == 1 + int(np.argmax([row["map50_95"] for row in curve]))
    with pytest.raises(ValueError, match="select_by 'loss'"):
        select(resumed_run.train_dir, "loss")


def test_map50_keeper_keeps_the_first_best_epoch_across_a_restart(resumed_run, tmp_path):
    from ultralytics import YOLO

    kept = tmp_path / "best_map50.pt"
    keeper = Map50Keeper(kept)
    for epoch, value in enumerate([0.1, 0.3, 0.3, 0.2]):
        keeper(SimpleNamespace(epoch=epoch, metrics={MAP50_KEY: value}, last=resumed_run.last))
    assert read_selection(kept) == {"epoch": 2, "map50": 0.3}
    restarted = Map50Keeper(kept)  # a resumed run starts from the record on disk
    restarted(SimpleNamespace(epoch=4, metrics={MAP50_KEY: 0.25}, last=resumed_run.last))
    assert read_selection(kept)["epoch"] == 2
    restarted(SimpleNamespace(epoch=5, metrics={MAP50_KEY: 0.4}, last=resumed_run.last))
    assert read_selection(kept) == {"epoch": 6, "map50": 0.4}
    assert list(YOLO(str(kept)).names.values()) == ["person", "bicycle", "car"]


def test_detect_command_on_the_sample_for_ir_and_vi_offline(sample_fused, tmp_path):
    overrides = [f"data.benchmark={sample_fused.root}", f"run.root={tmp_path}", "run.device=cpu",
                 "detect.epochs=1", "detect.imgsz=128", "detect.batch=4", "detect.workers=0"]
    args = ["detect", "-c", "sample", *(x for o in overrides for x in ("-s", o)), "--methods", "ir,vi"]
    try:
        with network_refused() as attempts:
            first = CliRunner().invoke(cli, args)
            stamp = unit_files(load_config("sample", overrides), "ir", 0).results.stat().st_mtime_ns
            again = CliRunner().invoke(cli, args)
    finally:  # the command's log handlers write to CliRunner's closed streams
        for handler in [h for h in logging.getLogger().handlers if getattr(h, "_pipelines", False)]:
            logging.getLogger().removeHandler(handler)
    assert first.exit_code == 0, first.output
    assert attempts == []

    config = load_config("sample", overrides)
    gt = load_ground_truth(sample_fused.coco_path("test"))
    with_boxes = {sample_fused.classes[a["category_id"] - 1] for a in gt.dataset["annotations"]}
    for method in ("ir", "vi"):
        out = unit_files(config, method, 0).folder
        results = json.loads((out / "results.json").read_text())
        assert results["method"] == method and results["model_source"] == "scratch"
        assert results["selected_epoch"] == 1 and len(results["val_map50_per_epoch"]) == 1
        assert Path(results["weights"]).is_file() and (out / "train" / "results.csv").is_file()
        assert set(results["per_class"]) == set(sample_fused.classes)
        assert {c for c, v in results["per_class"].items() if v is not None} == with_boxes
        assert 0.0 <= results["map50"] <= 1.0 and 0.0 <= results["ultralytics_map50"] <= 1.0
        detections = json.loads((out / "test_predictions.json").read_text())
        assert detections, "a conf of 0.001 keeps some boxes even for an untrained detector"
        assert {d["image_id"] for d in detections} <= set(gt.getImgIds())
        assert {d["category_id"] for d in detections} <= {c["id"] for c in gt.dataset["categories"]}
        widths = {img["id"]: img["width"] for img in gt.dataset["images"]}
        assert all(0 <= d["bbox"][0] and d["bbox"][0] + d["bbox"][2] <= widths[d["image_id"]] + 0.01 for d in detections)
        assert evaluate(gt, detections).map50 == pytest.approx(results["map50"])
        row = pd.read_csv(out / "results.csv")
        assert row.columns.tolist() == ["method", "seed", "map50", "map50_ci_low", "map50_ci_high", "map50_95",
                                        "map50_95_ci_low", "map50_95_ci_high", *sample_fused.classes]
        assert row["map50"].iloc[0] == pytest.approx(results["map50"], abs=1e-6)
    summary = pd.read_csv(detector(config).summary)
    assert summary["method"].tolist() == ["ir", "vi"]
    for method in ("ir", "vi"):  # one seed: the across-seed mean is that seed's value, with no sd
        results = json.loads(unit_files(config, method, 0).results.read_text())
        row = summary[summary["method"] == method].iloc[0]
        assert row["map50"] == pytest.approx(results["map50"], abs=1e-6) and pd.isna(row["map50_sd"])
        # the seed-and-image bootstrap with one seed is that seed's image bootstrap (same draws)
        assert [row["map50_ci_low"], row["map50_ci_high"]] == pytest.approx(results["map50_ci95"], abs=1e-6)

    assert again.exit_code == 0, again.output
    assert unit_files(config, "ir", 0).results.stat().st_mtime_ns == stamp
    with pytest.raises(DownstreamError, match=r"(?s)--force.*protocol.json: epochs was 1, now 2"):
        detect_method(load_config("sample", [*overrides, "detect.epochs=2"]), "ir")


def test_same_seed_same_training_on_cpu(sample_fused, tmp_path):
    use_offline_ultralytics(tmp_path / "ultralytics")
    data = write_data_yaml(tmp_path / "data.yaml", sample_fused.fused_dir("vi"), sample_fused.classes)
    settings = TrainSettings(epochs=1, imgsz=64, batch=4, workers=0, seed=3, device="cpu")
    runs = [pd.read_csv(train(data, tmp_path / f"run{i}", SCRATCH_CONFIG, settings) / "results.csv") for i in range(2)]
    losses = ["train/box_loss", "train/cls_loss", "train/dfl_loss", "val/box_loss"]
    assert runs[0][losses].equals(runs[1][losses])
    assert runs[0]["train/box_loss"].iloc[0] > 0


def test_without_resume_an_interrupted_run_restarts_and_matches_an_uninterrupted_one(sample_fused, tmp_path):
    """detect.resume=false (the sample's setting): a kill costs the epochs done, never the reproducibility."""
    use_offline_ultralytics(tmp_path / "ultralytics")
    data = write_data_yaml(tmp_path / "data.yaml", sample_fused.fused_dir("vi"), sample_fused.classes)
    settings = TrainSettings(epochs=2, imgsz=64, batch=4, workers=0, seed=1, device="cpu", resume=False)

    def interrupt_after_first_epoch(trainer):
        if trainer.epoch == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(data, tmp_path / "killed", SCRATCH_CONFIG, settings, callbacks={"on_fit_epoch_end": interrupt_after_first_epoch})
    assert not training_finished(tmp_path / "killed" / "weights" / "last.pt")
    rerun = pd.read_csv(train(data, tmp_path / "killed", SCRATCH_CONFIG, settings) / "results.csv")
    straight = pd.read_csv(train(data, tmp_path / "straight", SCRATCH_CONFIG, settings) / "results.csv")
    columns = ["epoch", "train/box_loss", "train/cls_loss", "train/dfl_loss", "val/box_loss", MAP50_KEY]
    assert list(rerun["epoch"]) == [1, 2]
    assert rerun[columns].equals(straight[columns])


def test_cpu_threads_is_used_by_ultralytics_and_the_callers_setting_comes_back(tmp_path):
    import torch

    use_offline_ultralytics(tmp_path)
    from ultralytics.utils import torch_utils

    before = torch.get_num_threads()
    with cpu_threads(before + 1):
        torch_utils.select_device("cpu", verbose=False)  # what every ultralytics train/predict/val call does
        assert torch.get_num_threads() == before + 1
    assert torch.get_num_threads() == before
    torch_utils.select_device("cpu", verbose=False)
    assert torch.get_num_threads() == torch_utils.NUM_THREADS  # ultralytics' own default is back too
    torch.set_num_threads(before)


def test_fonts_are_local_and_the_network_guard_sees_a_download(tmp_path):
    use_offline_ultralytics(tmp_path)
    from ultralytics.utils.checks import check_font

    with network_refused() as attempts:
        assert all(Path(check_font(name)).is_file() for name in ("Arial.ttf", "Arial.Unicode.ttf"))
        assert attempts == []
        assert check_font("NoSuchFont.ttf") is None  # not local: ultralytics tries its assets URL
    assert attempts and attempts[0][0] == "github.com"


def test_clear_errors_before_any_training(msrs_fused, tmp_path):
    with pytest.raises(ValueError, match="allow_scratch"):
        model_source(None, allow_scratch=False)
    with pytest.raises(FileNotFoundError, match="missing.pt.*yolov8s.pt"):
        model_source(tmp_path / "missing.pt", allow_scratch=True, config="yolov8s.yaml", release="yolov8s.pt")
    sample = load_config("sample")  # "0,1" is well-formed; whether the GPUs exist is checked at load, not here
    with pytest.raises(DetectError, match="one device per detector run"):
        protocol_settings(sample.detect, MODELS["yolov5s"], 0, device="0,1")
    with pytest.raises(ConfigError, match="detect.select_by = 'loss'"):
        load_config("sample", ["detect.select_by=loss"])
    check_fused_set(msrs_fused, "vi")
    with pytest.raises(FusedSetError, match="fused set 'average' is missing or incomplete.*pipelines fuse --method average"):
        check_fused_set(msrs_fused, "average")
    with pytest.raises(FileNotFoundError, match="dataset folder missing"):
        write_data_yaml(tmp_path / "data.yaml", tmp_path, ["person"])


def test_extra_train_arguments_are_part_of_the_protocol():
    """detect.train_args reach ultralytics for every method and are recorded, so a mid-run change is refused."""

    config = load_config("sample", ["detect.train_args={lr0: 0.003, mosaic: 0.0}"])
    assert dict(train_settings(config.detect, 0).extra) == {"lr0": 0.003, "mosaic": 0.0}
    assert protocol_settings(config.detect, MODELS["yolov5s"], 0)["train_args"] == {"lr0": 0.003, "mosaic": 0.0}
    assert protocol_settings(load_config("paper").detect, MODELS["yolov5s"], 0)["train_args"] == {}


def test_a_redone_fused_set_is_detected_again(sample_benchmark, tmp_path):
    """Detection results belong to the images they were trained on: when the fused set is redone
    (other options, a new split), the next detect run trains again instead of reporting stale numbers."""
    from fusion.engine import fuse_set
    from fusion.registry import build_fuser
    from pipelines.fusers import build_method

    bench = fused_copy(sample_benchmark, tmp_path, ("vi",))
    config = load_config("sample", [f"data.benchmark={bench.root}", f"run.root={tmp_path / 'runs'}", "run.device=cpu",
                                    "detect.epochs=1", "detect.imgsz=64", "detect.batch=4"])
    use_offline_ultralytics((run_layout(config).task("detection").workspace / "ultralytics"))
    first = detect_seed(config, "vi", 0)
    protocol = unit_files(config, "vi", 0).protocol
    assert json.loads(protocol.read_text())["fused_set"] == first["fused_set"]
    assert detect_seed(config, "vi", 0)["fused_set"] == first["fused_set"]  # unchanged set: skipped

    # redone with other content under this config's fingerprint (a set made under another one is refused:
    # tests/test_tamper.py)
    fuse_set(bench, "vi", build_fuser("average"), fingerprint=build_method(config, "vi")[1], force=True, progress=False)
    second = detect_seed(config, "vi", 0)
    assert second["fused_set"] != first["fused_set"]
    assert json.loads(protocol.read_text())["fused_set"] == second["fused_set"]


@pytest.mark.parametrize("row", sorted(MODELS))
def test_every_detector_row_builds_offline_at_the_scale_its_name_says(row, tmp_path):
    """A registry row is usable only if ultralytics builds its model config without a download, at the scale
    (n, s, ...) the row's name and summary promise (ultralytics reads the scale from the file name)."""
    use_offline_ultralytics(tmp_path)
    from ultralytics import YOLO

    model = MODELS[row]
    with network_refused() as attempts:
        built = YOLO(model.options["config"], task="detect").model
    assert attempts == []
    assert built.yaml["scale"] == row[-1] and model.summary.lower().startswith(row)
    parameters = sum(p.numel() for p in built.parameters())
    assert (parameters < 4e6) if row.endswith("n") else (parameters > 7e6)
