"""Extension points: a downstream task and a detector, each registered from this file alone, run through
`run-all` (train, evidence, compare, report) with no change to pipelines/, reports/ or the layout module.

The toy task is a real (if tiny) task: a one-parameter "model" learns on the TRAIN split a threshold of a
fused image's mean grey level that separates images with objects (YOLO labels not empty) from empty ones,
and is scored per test image (correct or not); its statistics are accuracy with the bootstrap and the
paired permutation test the compare stage applies to every task.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import pandas as pd
import pytest
from pydantic import Field

from fusionbench.files import atomic_write_bytes, atomic_write_text
from fusionbench.layout import UnitFiles
from fusionbench.settings import Section
from fusionbench.stats import Draws
from fusionbench.tasks import Model, Statistic, Task, Unit, register_model, register_task, tasks
from pipelines.config import load_config, run_layout
from pipelines.run_all import format_summary, run_all


class ToySettings(Section):
    seeds: list[int] = Field([0], description="seeds (the toy model is deterministic; each seed is one run)")


@dataclass(frozen=True)
class ToyFiles(UnitFiles):
    @property
    def correct(self) -> Path:
        return self.folder / "correct.npz"

    @property
    def evidence(self) -> tuple[Path, ...]:
        return (self.correct,)


def has_objects(unit: Unit, split: str, stem: str) -> bool:
    return bool((unit.benchmark.labels_dir(split) / f"{stem}.txt").read_text().strip())


def brightness(unit: Unit, split: str, stem: str) -> float:
    return float(cv2.imread(str(unit.benchmark.fused_image(unit.method, split, stem)), cv2.IMREAD_GRAYSCALE).mean())


def run(unit: Unit) -> dict[str, Any]:
    train = [(brightness(unit, "train", s), has_objects(unit, "train", s)) for s in unit.benchmark.stems("train")]
    candidates = sorted(b for b, _ in train)
    threshold = max(candidates, key=lambda t: np.mean([(b > t) == y for b, y in train]))
    stems = unit.benchmark.stems("test")
    correct = np.array([(brightness(unit, "test", s) > threshold) == has_objects(unit, "test", s) for s in stems], float)
    files = ToyFiles(unit.folder)
    buffer = io.BytesIO()
    np.savez(buffer, stems=np.array(stems), correct=correct)
    atomic_write_bytes(files.correct, buffer.getvalue())
    results = {"method": unit.method, "seed": unit.seed, "accuracy": float(correct.mean()), "threshold": threshold,
               "bootstrap": {"replicates": unit.bootstrap.replicates, "seed": unit.bootstrap.seed}}
    atomic_write_text(files.results, json.dumps(results))
    return results


class ToyStatistics:
    primary = Statistic("accuracy", "accuracy")

    def load(self, folder: Path) -> tuple[tuple[str, ...], np.ndarray]:
        with np.load(ToyFiles(folder).correct) as data:
            return tuple(data["stems"].tolist()), data["correct"]

    def statistics(self, evidence: Any) -> list[Statistic]:
        return [self.primary]

    def images(self, evidence: Any) -> tuple[str, ...]:
        return evidence[0]

    def point_values(self, seeds: Sequence[Any]) -> np.ndarray:
        return np.array([[correct.mean()] for _, correct in seeds])

    def replicate_values(self, seeds: Sequence[Any], draws: Draws) -> np.ndarray:
        return np.stack([(draws.images @ correct / draws.images.sum(axis=1))[:, None] for _, correct in seeds], axis=1)

    def permuted_deltas(self, a: Sequence[Any], b: Sequence[Any], permutations: int, rng: np.random.Generator) -> np.ndarray:
        total = np.zeros(permutations)
        for (_, ca), (_, cb) in zip(a, b):
            swap = rng.random((permutations, ca.size)) < 0.5
            total += (np.where(swap, cb, ca) - np.where(swap, ca, cb)).mean(axis=1)
        return total / len(a)


def figures(view: Any) -> list[dict[str, Any]]:
    stem = view.stems[0]
    return [{"kind": "grid", "title": f"toy: {stem}", "tiles": [(m, view.fused(m, stem)) for m in view.methods]}]


TOY = Task(name="toy", title="Toy task", section="toy", settings=ToySettings, labels=("boxes",),
           models={"threshold": Model("threshold", "a brightness threshold")}, default_models=("threshold",),
           statistics=ToyStatistics(), run=run, protocol=lambda unit: {"seed": unit.seed}, files=ToyFiles,
           figures=figures)
TOY_DETECTOR = Model("toy_yolov8n", "YOLOv8n (a toy detector row)", {"config": "yolov8n.yaml", "weights": "yolov8n.pt"})


@pytest.fixture(scope="module")
def plugged_run(tmp_path_factory):
    if "toy" not in tasks():
        register_task(TOY)
    register_model("detection", TOY_DETECTOR)
    root = tmp_path_factory.mktemp("plugins")
    config = load_config("sample", [
        f"run.root={root / 'runs'}", f"report.dir={root / 'report'}", "sample.pairs=16", "sample.width=128",
        "sample.height=96", "fusion.methods=[ir,vi,average]", "fusion.workers=1", "detect.epochs=1", "detect.imgsz=64",
        "detect.batch=4", "report.qualitative=1", "stats.bootstrap=200", "stats.permutations=200",
        "tasks={detection: [yolov5s, toy_yolov8n], toy: [threshold]}", "metrics.entropy=false"])
    summary = run_all(config, progress=False)
    return config, summary


def test_a_toy_task_runs_through_run_all(plugged_run):
    config, summary = plugged_run
    assert not summary.failures, [(s.stage, s.method, s.detail) for s in summary.failures]
    layout = run_layout(config)
    runs = layout.task("toy").model("threshold")
    for method in ("ir", "vi", "average"):
        results = json.loads(runs.method(method).seed(0).results.read_text())
        with np.load(ToyFiles(runs.method(method).seed(0).folder).correct) as data:
            assert results["accuracy"] == pytest.approx(data["correct"].mean())
        summary_json = json.loads(runs.method(method).summary.read_text())
        assert summary_json["statistics"]["accuracy"]["mean"] == pytest.approx(results["accuracy"])
    tests = pd.read_csv(layout.compare.task("toy").tests)
    assert set(tests["model"]) == {"threshold"} and {"ir", "vi"} <= set(tests["reference"])
    assert tests["p"].between(0, 1).all()
    html = layout.pages.index.read_text()
    assert "Toy task: a brightness threshold" in html and 'id="toy-threshold"' in html
    assert "figures/toy_threshold_grid0.png" in html
    printed = format_summary(config, summary)
    assert "toy threshold: test accuracy" in printed and "toy threshold (accuracy" in printed


def test_two_detectors_side_by_side_and_a_detector_registered_here(plugged_run):
    config, _ = plugged_run
    layout = run_layout(config)
    for model in ("yolov5s", "toy_yolov8n"):
        results = json.loads(layout.task("detection").model(model).method("vi").seed(0).results.read_text())
        assert results["model"] == model  # the detector's identity is in every result
    tests = pd.read_csv(layout.compare.task("detection").tests)
    assert set(tests["model"]) == {"yolov5s", "toy_yolov8n"}
    html = layout.pages.index.read_text()
    assert 'id="detection-yolov5s"' in html and 'id="detection-toy_yolov8n"' in html
    assert "Object detection: YOLOv8n (a toy detector row)" in html
    assert "YOLOv5s" in html


def test_an_unknown_task_or_model_is_a_config_error():
    from pipelines.config import ConfigError

    with pytest.raises(ConfigError, match="tasks.detections: unknown task 'detections'; did you mean detection"):
        load_config("sample", ["tasks={detections: [yolov5s]}"])
    with pytest.raises(ConfigError, match="unknown detection model 'yolov5'; did you mean yolov5s"):
        load_config("sample", ["tasks.detection=[yolov5]"])
    with pytest.raises(ConfigError, match="weights is one file but 2 detectors"):
        load_config("sample", ["tasks.detection=[yolov5s, yolov8s]", "detect.weights=/x.pt"])
