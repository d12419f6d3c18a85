"""`pipelines run-all` end to end on a reduced synthetic sample: every stage, skip on rerun, a failing
method that does not stop the others, and a kill during detection or compare that reruns to the same results."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from runs import MODEL, detector, unit_files

import detection.yolo
import pipelines.compare
from pipelines.cli import cli
from pipelines.config import load_config, run_layout
from pipelines.run_all import run_all

METHODS = ["ir", "vi", "average", "s4fusion"]


def reduced(root: Path, methods: list[str] = METHODS, *extra: str) -> list[str]:
    """A sample run small enough for CI: 16 pairs at 128x96, 1-epoch S4Fusion, 2-epoch detectors at 64 px."""
    return [
        f"run.root={root / 'runs'}", f"report.dir={root / 'report'}",
        "sample.pairs=16", "sample.width=128", "sample.height=96",
        f"fusion.methods=[{','.join(methods)}]", "fusion.workers=1",
        "fusion.train.epochs=1", "fusion.train.crop=49", "fusion.train.batch_size=2",
        "detect.epochs=2", "detect.imgsz=64", "detect.batch=4", "report.qualitative=2",
        "tasks.segmentation=[]", *extra,  # segmentation through run-all: tests/test_segmentation_task.py
    ]


def detection_results(config: dict, methods: list[str]) -> dict[str, dict]:
    keep = ("map50", "map50_95", "per_class", "selected_epoch", "val_map50_per_epoch")
    out = {}
    for method in methods:
        results = json.loads(unit_files(config, method, 0).results.read_text())
        out[method] = {k: results[k] for k in keep}
    return out


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> tuple[Path, list[str], str]:
    root = tmp_path_factory.mktemp("run_all")
    overrides = reduced(root)
    args = ["run-all", "--no-progress", *sum((["-s", o] for o in overrides), [])]
    result = CliRunner().invoke(cli, args)
    return root, overrides, result.output


def test_run_all_runs_every_stage_and_builds_the_report(finished_run):
    root, overrides, output = finished_run
    config = load_config("sample", overrides)
    assert "all steps succeeded" in output, output
    assert run_layout(config).fusion("s4fusion").best.is_file()
    for method in METHODS:
        assert unit_files(config, method, 0).results.is_file(), method
        assert detector(config).method(method).summary.is_file(), method
        assert run_layout(config).metrics.method(method).per_image.is_file(), method
    for name in ("detection.csv", "detection_intervals.csv", "metrics.csv", "metric_intervals.csv", "manifest.json"):
        assert (run_layout(config).compare.folder / name).is_file(), name
    assert f"detection {MODEL} (mAP@50" in output and "[" in output.split("test mAP@50")[1]  # intervals in the summary
    summary = detector(config).summary.read_text().splitlines()
    assert [line.split(",")[0] for line in summary[1:]] == sorted(METHODS)
    index = run_layout(config).pages.index
    assert str(index) in output and index.is_file()
    html = index.read_text()
    assert f"figures/forest_detection_{MODEL}.png" in html and "after Holm" in html and "95% interval" in html
    for method in METHODS:
        assert method in html


def test_second_run_skips_everything(finished_run):
    root, overrides, _ = finished_run
    config = load_config("sample", overrides)
    watched = [run_layout(config).fusion("s4fusion").last,
               *(unit_files(config, m, 0).results for m in METHODS),
               *(detector(config).method(m).summary for m in METHODS),
               *(run_layout(config).compare.folder / name for name in ("detection.csv", "metrics.csv", "manifest.json")),
               *(run_layout(config).metrics.method(m).per_image for m in METHODS),
               *(config_path / "manifest.json" for config_path in
                 (root / "runs" / "sample" / "benchmark" / "fused" / m for m in METHODS))]
    before = {p: p.stat().st_mtime_ns for p in watched}
    summary = run_all(config, progress=False)
    assert not summary.failures
    assert {p: p.stat().st_mtime_ns for p in watched} == before


def test_a_failing_method_does_not_stop_the_others(finished_run, tmp_path):
    root, overrides, _ = finished_run
    broken = tmp_path / "no_such_folder"
    config = load_config("sample", [*overrides, "fusion.methods=[ir, imported]", f"methods.imported.from={broken}"])
    summary = run_all(config, progress=False)
    assert [(s.stage, s.method) for s in summary.failures] == [("fuse", "imported")]
    assert "no_such_folder" in summary.failures[0].detail
    assert summary.report is not None  # the report is still built, showing `imported` as missing
    assert "imported" in summary.report.read_text()
    result = CliRunner().invoke(cli, ["run-all", "--no-progress", *sum((["-s", o] for o in [
        *overrides, "fusion.methods=[ir, imported]", f"methods.imported.from={broken}"]), [])])
    assert result.exit_code == 1 and "FAILED fuse imported" in result.output


def test_kill_during_detection_then_rerun_gives_the_same_results(finished_run, tmp_path, monkeypatch):
    _, _, _ = finished_run
    methods = ["ir", "vi"]
    straight = load_config("sample", reduced(tmp_path / "straight", methods))
    killed = load_config("sample", reduced(tmp_path / "killed", methods))
    assert not run_all(straight, progress=False).failures

    real_train = detection.yolo.train

    def killed_in_second_method(data_yaml, train_dir, source, settings, callbacks=None):
        def kill(trainer):
            if "vi" in str(train_dir) and trainer.epoch == 0:
                raise KeyboardInterrupt  # what Ctrl-C or a kill during vi's first epoch leaves behind
        return real_train(data_yaml, train_dir, source, settings, callbacks={"on_fit_epoch_end": kill})

    monkeypatch.setattr(detection.yolo, "train", killed_in_second_method)
    with pytest.raises(KeyboardInterrupt):
        run_all(killed, progress=False)
    assert not unit_files(killed, "vi", 0).results.exists()
    monkeypatch.setattr(detection.yolo, "train", real_train)
    assert not run_all(killed, progress=False).failures
    assert detection_results(killed, methods) == detection_results(straight, methods)


def test_kill_during_compare_then_rerun_gives_identical_files(finished_run, monkeypatch):
    root, overrides, _ = finished_run
    config = load_config("sample", overrides)
    folder = pipelines.compare.run_compare(config, METHODS)  # (another test reran this run with fewer methods)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    for path in folder.iterdir():
        path.unlink()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # after the detection files, before the metric files and the manifest

    monkeypatch.setattr(pipelines.compare, "metric_comparisons", killed)
    with pytest.raises(KeyboardInterrupt):
        pipelines.compare.run_compare(config, METHODS)
    assert (folder / "detection.csv").is_file() and not (folder / "manifest.json").exists()
    monkeypatch.undo()
    assert not run_all(config, progress=False).failures
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
