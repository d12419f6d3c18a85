"""The segmentation task's second row, ultralytics' own `semantic` task (YOLO26n-sem), through the stages on
the synthetic sample with every network access refused: run-all trains it per method from a random start
(2 epochs at 64 px: the numbers are near chance, the tests check the mechanics), writes the same evidence
as the SegFormer row (equal to a float64 pixel count on the written predictions), compares and reports; a
rerun reuses every unit; a training killed after its first epoch restarts to the same results; planted
checkpoints (weights, best.pt) are refused unrun; settings the row cannot apply are refused or recorded as
what it does."""
from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from click.testing import CliRunner
from network import network_refused
from planted import plant_pickle, refused
from segmentation_runs import float64_scores, tiny, unit_files

from fusionbench.ultralytics_offline import CheckpointRefusedError
from pipelines.cli import cli
from pipelines.compare import TASK_COLUMNS
from pipelines.config import ConfigError, load_config, run_layout
from pipelines.downstream import run_unit
from pipelines.run_all import format_summary, run_all
from segmentation import yolo_semantic

MODEL = "yolo26n_sem"
METHODS = ["ir", "vi"]


@pytest.fixture(scope="module")
def segmented(tmp_path_factory):
    root = tmp_path_factory.mktemp("yolo_sem")
    config = load_config("sample", tiny(root, METHODS, f"tasks.segmentation=[{MODEL}]"))
    with network_refused() as attempts:
        summary = run_all(config, progress=False)
    return config, summary, attempts


def test_run_all_trains_yolo26n_sem_offline_and_its_evidence_is_the_pixel_count(segmented):
    config, summary, attempts = segmented
    assert not summary.failures, [(s.stage, s.method, s.detail) for s in summary.failures]
    assert attempts == []  # ultralytics tried no download, no DNS lookup
    for method in METHODS:
        files = unit_files(config, MODEL, method)
        results = json.loads(files.results.read_text())
        miou, accuracy = float64_scores(config, MODEL, method)
        assert results["miou"] == pytest.approx(miou, abs=1e-12)
        assert results["pixel_accuracy"] == pytest.approx(accuracy, abs=1e-12)
        assert results["model"] == MODEL and results["model_source"] == "random"
        # the shared settings as this row applies them, and the ultralytics arguments they became
        assert (results["epochs"], results["imgsz"], results["lr"], results["eval_every"]) == (2, 64, 1e-4, 1)
        assert results["normalisation"].startswith("none")
        assert results["ultralytics_args"]["nbs"] == results["batch"]  # no gradient accumulation
        assert results["ultralytics_args"]["optimizer"] == "AdamW" and results["ultralytics_args"]["deterministic"]
        # selected by ultralytics' val: best.pt holds the last epoch of the highest val mIoU
        per_epoch = {int(e): v for e, v in results["val_miou_per_epoch"].items()}
        assert sorted(per_epoch) == [1, 2]
        assert results["selected_epoch"] == max(e for e, v in per_epoch.items() if v == max(per_epoch.values()))
        assert "best.pt" in results["selected_by"]
        assert len(list(files.predicted.glob("*.png"))) == results["images"]
    compare = run_layout(config).compare.task("segmentation")
    assert list(pd.read_csv(compare.tests).columns) == list(TASK_COLUMNS)
    assert {"miou", "pixel_accuracy"} <= set(pd.read_csv(compare.intervals)["statistic"])
    html = run_layout(config).pages.index.read_text()
    assert f'id="segmentation-{MODEL}"' in html and "Semantic segmentation: YOLO26n-sem (ultralytics)" in html
    assert f"segmentation {MODEL}: test mIoU" in format_summary(config, summary)


def test_a_rerun_reuses_every_unit(segmented):
    config, _, _ = segmented
    watched = [path for method in METHODS for path in (unit_files(config, MODEL, method).results,
                                                       unit_files(config, MODEL, method).confusion,
                                                       unit_files(config, MODEL, method).train / "weights" / "best.pt")]
    before = {path: path.stat().st_mtime_ns for path in watched}
    with network_refused() as attempts:
        assert not run_all(config, progress=False).failures
    assert {path: path.stat().st_mtime_ns for path in watched} == before and attempts == []


def test_a_training_killed_after_its_first_epoch_restarts_to_the_same_results(segmented, tmp_path, monkeypatch):
    config, _, _ = segmented
    killed = load_config("sample", tiny(tmp_path, METHODS, f"tasks.segmentation=[{MODEL}]",
                                        f"data.benchmark={run_layout(config).benchmark}"))
    record = yolo_semantic._SelectionRecorder.__call__

    def dies_after_the_first_epoch(self, trainer):
        record(self, trainer)
        raise KeyboardInterrupt  # what Ctrl-C or SIGTERM leaves: epoch 1 saved, not finished

    monkeypatch.setattr(yolo_semantic._SelectionRecorder, "__call__", dies_after_the_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        run_unit(killed, "segmentation", MODEL, "vi", 0)
    assert (unit_files(killed, MODEL, "vi").train / "weights" / "last.pt").is_file()
    assert not unit_files(killed, MODEL, "vi").results.exists()
    monkeypatch.setattr(yolo_semantic._SelectionRecorder, "__call__", record)
    rerun = run_unit(killed, "segmentation", MODEL, "vi", 0)
    straight = json.loads(unit_files(config, MODEL, "vi").results.read_text())
    for key in ("miou", "miou_ci95", "pixel_accuracy", "iou", "selected_epoch", "val_miou_per_epoch"):
        assert rerun[key] == straight[key], key


def test_planted_checkpoints_are_refused_and_run_nothing(segmented, tmp_path):
    config, _, _ = segmented
    marker = tmp_path / "ran"
    weights = plant_pickle(tmp_path / "yolo26n-sem.pt", marker)
    given = load_config("sample", tiny(tmp_path, METHODS, f"tasks.segmentation=[{MODEL}]", f"segment.weights={weights}",
                                       f"data.benchmark={run_layout(config).benchmark}"))
    with pytest.raises(CheckpointRefusedError, match=refused(weights)):
        run_unit(given, "segmentation", MODEL, "vi", 0)
    # a finished training whose best.pt was replaced: found before the predictor loads it
    copied = load_config("sample", tiny(tmp_path / "copied", METHODS, f"tasks.segmentation=[{MODEL}]",
                                        f"data.benchmark={run_layout(config).benchmark}"))
    train = unit_files(copied, MODEL, "vi").train
    shutil.copytree(unit_files(config, MODEL, "vi").train, train)
    best = plant_pickle(train / "weights" / "best.pt", marker)
    with pytest.raises(CheckpointRefusedError, match=refused(best)):
        run_unit(copied, "segmentation", MODEL, "vi", 0)
    assert not marker.exists()


def test_settings_the_row_cannot_apply_are_refused_and_it_is_listed(tmp_path):
    both = f"tasks.segmentation=[segformer_b0,{MODEL}]"
    with pytest.raises(ConfigError, match=f"per_method: {MODEL} takes ultralytics' input"):
        load_config("sample", tiny(tmp_path, METHODS, both, "segment.normalisation=per_method"))
    with pytest.raises(ConfigError, match="weights is one file but 2 segmenters"):
        load_config("sample", tiny(tmp_path, METHODS, both, f"segment.weights={tmp_path / 'w.pt'}"))
    listed = CliRunner().invoke(cli, ["config", "--tasks"])
    assert f"{MODEL}: YOLO26n-sem (ultralytics)" in listed.output
