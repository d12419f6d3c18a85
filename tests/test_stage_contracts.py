"""Stage contracts: content-verified fused sets, detection reuse keyed on the data it read, deletion
that stays inside the stage's folder, and a damaged detector checkpoint."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from runs import detect_method, detect_seed, detector, unit_files

from detection.task import DetectError, inputs
from detection.yolo import TrainSettings, train, write_data_yaml
from fusionbench.benchmark import Benchmark
from fusionbench.files import sha256_file
from fusionbench.fused_set import FusedSetError, MethodNameError, check_fused_set, is_complete
from fusionbench.ultralytics_offline import training_finished, use_offline_ultralytics
from pipelines.cli import cli
from pipelines.config import load_config, run_layout
from pipelines.fuse import fuse_method
from pipelines.safe_delete import UnsafeDeletionError, remove_inside

TINY = ["run.device=cpu", "detect.epochs=1", "detect.imgsz=64", "detect.batch=4", "detect.workers=0"]


def _fused_copy(benchmark: Benchmark, root: Path, method: str = "vi") -> tuple[Benchmark, list[str]]:
    """A private copy of ``benchmark`` with ``method`` fused by the fuse stage; returns it and its config overrides."""
    shutil.copytree(benchmark.root, root / "benchmark", ignore=shutil.ignore_patterns("fused"))
    overrides = [f"data.benchmark={root / 'benchmark'}", f"run.root={root / 'runs'}", "fusion.workers=1", *TINY]
    fuse_method(load_config("sample", overrides), method, progress=False)
    return Benchmark(root / "benchmark"), overrides


def _drop_log_handlers() -> None:
    """The CLI's log handlers write to CliRunner's streams, closed after each invoke."""
    for handler in [h for h in logging.getLogger().handlers if getattr(h, "_pipelines", False)]:
        logging.getLogger().removeHandler(handler)


def test_detect_deletes_nothing_outside_its_folder(tmp_path: Path):
    """Observation 4: `detect --method ../fusion --force` deleted the S4Fusion checkpoints, `--method .`
    every method's results."""
    config = load_config("sample", [f"run.root={tmp_path}"])
    checkpoint = run_layout(config).fusion("s4fusion").best
    results = unit_files(config, "gff", 0).results
    for path in (checkpoint, results):
        path.parent.mkdir(parents=True)
        path.write_text("kept")
    for name in ("../fusion", ".", "..", "gff/../../fusion"):
        with pytest.raises(MethodNameError, match="method name"):
            detect_method(config, name, force=True)
        try:
            result = CliRunner().invoke(cli, ["detect", "-s", f"run.root={tmp_path}", "--method", name, "--force"])
        finally:
            _drop_log_handlers()
        assert "method name" in result.output and "Traceback" not in result.output
    assert checkpoint.read_text() == "kept" and results.read_text() == "kept"

    stage = detector(config).folder
    for outside in (stage / ".." / "fusion", stage / ".", stage / "gff" / ".." / ".."):
        with pytest.raises(UnsafeDeletionError, match="not inside"):
            remove_inside(outside, stage, "test")
    (stage / "link").symlink_to(checkpoint.parent, target_is_directory=True)
    assert remove_inside(stage / "link", stage, "test")  # the link goes, not what it points to
    assert checkpoint.read_text() == "kept" and not (stage / "link").exists()
    assert remove_inside(stage / "gff", stage, "--force") and not results.exists()


def test_a_damaged_fused_image_is_found_refused_and_redone(sample_benchmark: Benchmark, tmp_path: Path):
    """Observation 3: garbage bytes in fused images passed `is_complete` (it checked existence only)."""
    bench, overrides = _fused_copy(sample_benchmark, tmp_path)
    assert is_complete(bench, "vi")
    damaged = [bench.fused_image("vi", p.split, p.stem) for p in bench.pairs("train")[:2]]
    good = {path: path.read_bytes() for path in damaged}
    for path in damaged:
        path.write_bytes(path.read_bytes()[:100] + b"garbage" * 50)
    assert not is_complete(bench, "vi")
    with pytest.raises(FusedSetError, match="content differs from the fuse manifest") as error:
        check_fused_set(bench, "vi")
    assert all(str(path) in str(error.value) for path in damaged)
    with pytest.raises(FusedSetError):
        detect_method(load_config("sample", overrides), "vi")
    assert not detector(load_config("sample", overrides)).method("vi").folder.exists()  # nothing trained on it

    untouched = {p: p.stat().st_mtime_ns for p in bench.fused_dir("vi").glob("images/*/*.png") if p not in good}
    fuse_method(load_config("sample", overrides), "vi", progress=False)
    assert is_complete(bench, "vi")
    assert all(path.read_bytes() == content for path, content in good.items())  # redone ...
    assert all(p.stat().st_mtime_ns == t for p, t in untouched.items())  # ... and only those


def test_detection_inputs_change_with_labels_ground_truth_and_images(sample_benchmark: Benchmark, tmp_path: Path):
    bench, _ = _fused_copy(sample_benchmark, tmp_path)
    before = inputs(bench, "vi")
    label = bench.labels_dir("val") / f"{bench.stems('val')[0]}.txt"
    label.write_text(label.read_text() + "0 0.5 0.5 0.1 0.1\n")
    after_label = inputs(bench, "vi")
    assert [k for k in before if before[k] != after_label[k]] == ["labels"]
    coco = bench.coco_path("test")
    gt = json.loads(coco.read_text())
    gt["annotations"][0]["bbox"][2] += 1.0
    coco.write_text(json.dumps(gt))
    after_gt = inputs(bench, "vi")
    assert [k for k in before if after_label[k] != after_gt[k]] == ["ground_truth"]
    label.unlink()
    with pytest.raises(DetectError, match=f"1 label file.*{label.name}"):
        inputs(bench, "vi")


def test_detect_checks_the_ground_truth_before_training(sample_benchmark: Benchmark, tmp_path: Path):
    """Observation 12: `detect` looked for coco/test.json only after training."""
    bench, overrides = _fused_copy(sample_benchmark, tmp_path)
    bench.coco_path("test").unlink()
    config = load_config("sample", overrides)
    with pytest.raises(DetectError, match=f"{bench.coco_path('test')}: COCO ground truth missing"):
        detect_method(config, "vi")
    assert not detector(config).method("vi").folder.exists()


def test_an_edited_annotation_trains_the_detector_again(sample_benchmark: Benchmark, tmp_path: Path, caplog):
    """Observation 2: after an annotation edit (labels and coco/test.json), detection was reported done."""
    bench, overrides = _fused_copy(sample_benchmark, tmp_path)
    config = load_config("sample", overrides)
    use_offline_ultralytics((run_layout(config).task("detection").workspace / "ultralytics"))
    first = detect_seed(config, "vi", 0)
    assert detect_seed(config, "vi", 0) == first  # nothing changed: reused

    stem = bench.stems("test")[0]
    label = bench.labels_dir("test") / f"{stem}.txt"
    label.write_text("0 0.5 0.5 0.2 0.2\n")
    gt = json.loads(bench.coco_path("test").read_text())
    image = next(i for i in gt["images"] if i["file_name"] == f"{stem}.png")
    gt["annotations"].append({"id": 10_000, "image_id": image["id"], "category_id": 1, "iscrowd": 0,
                              "bbox": [0.4 * image["width"], 0.4 * image["height"], 0.2 * image["width"],
                                       0.2 * image["height"]], "area": 0.04 * image["width"] * image["height"]})
    bench.coco_path("test").write_text(json.dumps(gt))
    with caplog.at_level(logging.WARNING):
        second = detect_seed(config, "vi", 0)
    assert "inputs changed since it ran (ground_truth, labels)" in caplog.text
    assert second["labels"] != first["labels"] and second["ground_truth"] == sha256_file(bench.coco_path("test"))
    protocol = json.loads(unit_files(config, "vi", 0).protocol.read_text())
    assert protocol["labels"] == second["labels"]


def test_a_truncated_last_checkpoint_restarts_the_training(sample_benchmark: Benchmark, tmp_path: Path, caplog):
    """Observation 5: a truncated ultralytics last.pt crashed every rerun with a PytorchStreamReader error."""
    import torch

    bench, _ = _fused_copy(sample_benchmark, tmp_path)
    use_offline_ultralytics(tmp_path / "ultralytics")
    data = write_data_yaml(tmp_path / "data.yaml", bench.fused_dir("vi"), bench.classes)
    train_dir = tmp_path / "train"
    last = train_dir / "weights" / "last.pt"
    last.parent.mkdir(parents=True)
    torch.save({"epoch": 0, "model": torch.zeros(1000)}, last)
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # killed while saving
    (train_dir / "results.csv").write_text("stale rows of the interrupted run\n")
    with caplog.at_level(logging.WARNING):
        train(data, train_dir, "yolov5s.yaml", TrainSettings(epochs=1, imgsz=64, batch=4, workers=0, seed=0,
                                                             device="cpu"))
    assert f"{last}: damaged checkpoint" in caplog.text and "restarting this training from epoch 0" in caplog.text
    assert training_finished(last)
    assert "stale rows" not in (train_dir / "results.csv").read_text()
