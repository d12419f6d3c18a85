"""The segmentation task through the stages on the synthetic sample (whose frames carry masks): run-all
trains a tiny SegFormer-B0 per method, writes the evidence, compares and reports; the numbers equal a
pixel-by-pixel float64 count on the written predictions; a rerun skips; a kill during training reruns to
the same results; a benchmark without masks is refused with what to do."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import segmentation_runs
from segmentation_runs import float64_scores, unit_files

import segmentation.train
from pipelines.compare import TASK_COLUMNS
from pipelines.config import load_config, run_layout
from pipelines.downstream import DownstreamError, run_method, run_unit
from pipelines.run_all import format_summary, run_all
from segmentation.task import SegmentationFiles

METHODS = ["ir", "vi", "average"]


def tiny(root: Path, *extra: str) -> list[str]:
    return segmentation_runs.tiny(root, METHODS, *extra)


@pytest.fixture(scope="module")
def segmented(tmp_path_factory):
    root = tmp_path_factory.mktemp("segmentation")
    config = load_config("sample", tiny(root))
    summary = run_all(config, progress=False)
    return config, summary


def units(config, method, seed=0) -> SegmentationFiles:
    return unit_files(config, "segformer_b0", method, seed)


def test_run_all_trains_evaluates_compares_and_reports_segmentation(segmented):
    config, summary = segmented
    assert not summary.failures, [(s.stage, s.method, s.detail) for s in summary.failures]
    for method in METHODS:
        results = json.loads(units(config, method).results.read_text())
        miou, accuracy = float64_scores(config, "segformer_b0", method)
        assert results["miou"] == pytest.approx(miou, abs=1e-12)
        assert results["pixel_accuracy"] == pytest.approx(accuracy, abs=1e-12)
        assert results["model"] == "segformer_b0" and results["model_source"] == "random"
        assert results["miou_ci95"][0] <= results["miou"] <= results["miou_ci95"][1]
        assert results["normalisation"] == "imagenet" and results["colour"] == "colour"  # recorded
        assert units(config, method).confusion.stat().st_size < 1_000_000
    compare = run_layout(config).compare.task("segmentation")
    tests = pd.read_csv(compare.tests)
    assert list(tests.columns) == list(TASK_COLUMNS) and set(tests["statistic"]) == {"miou"}
    intervals = pd.read_csv(compare.intervals)
    assert {"miou", "pixel_accuracy", "iou/road"} <= set(intervals["statistic"])
    html = run_layout(config).pages.index.read_text()
    assert 'id="segmentation-segformer_b0"' in html and "Semantic segmentation: SegFormer-B0" in html
    assert "figures/segmentation_segformer_b0_grid1.png" in html  # the grid after the caption
    assert "tables/segmentation_segformer_b0_per_class.csv" in html
    assert "segmentation segformer_b0: test mIoU" in format_summary(config, summary)


def test_a_rerun_skips_every_segmenter(segmented):
    config, _ = segmented
    watched = [units(config, m).results for m in METHODS] + [units(config, m).confusion for m in METHODS]
    before = {p: p.stat().st_mtime_ns for p in watched}
    assert not run_all(config, progress=False).failures
    assert {p: p.stat().st_mtime_ns for p in watched} == before


def test_a_kill_during_training_reruns_to_the_same_results(segmented, tmp_path, monkeypatch):
    config, _ = segmented
    killed = load_config("sample", tiny(tmp_path, f"data.benchmark={run_layout(config).benchmark}"))
    real = segmentation.train._train_epoch
    calls = []

    def dies_in_the_second_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # what Ctrl-C or SIGTERM leaves: epoch 1 saved, epoch 2 lost
        return real(*args, **kwargs)

    monkeypatch.setattr(segmentation.train, "_train_epoch", dies_in_the_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        run_unit(killed, "segmentation", "segformer_b0", "vi", 0)
    assert not units(killed, "vi").results.exists() and (units(killed, "vi").train / "last.pt").is_file()
    monkeypatch.setattr(segmentation.train, "_train_epoch", real)
    rerun = run_unit(killed, "segmentation", "segformer_b0", "vi", 0)
    straight = json.loads(units(config, "vi").results.read_text())
    for key in ("miou", "miou_ci95", "pixel_accuracy", "iou", "selected_epoch", "val_miou_per_epoch"):
        assert rerun[key] == straight[key], key


def test_a_benchmark_without_masks_is_refused_with_what_to_do(segmented, tmp_path):
    config, _ = segmented
    bench = tmp_path / "bench"
    shutil.copytree(run_layout(config).benchmark, bench, ignore=shutil.ignore_patterns("fused"))
    manifest = json.loads((bench / "manifest.json").read_text())
    manifest["labels"], manifest["segmentation"] = ["boxes"], None
    (bench / "manifest.json").write_text(json.dumps(manifest))
    boxes_only = load_config("sample", tiny(tmp_path, f"data.benchmark={bench}"))
    with pytest.raises(DownstreamError, match=r"segmentation needs masks.*tasks.segmentation=\[\]"):
        run_method(boxes_only, "segmentation", "segformer_b0", "vi")
