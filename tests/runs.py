"""Shortcuts the tests use to reach a run's detection results (the sample config's detector)."""
from __future__ import annotations

from typing import Any

from detection.task import DetectionFiles
from fusionbench.layout import ModelRuns
from pipelines.config import load_config, run_layout
from pipelines.downstream import run_method, run_unit

TASK = "detection"
MODEL = load_config("sample").tasks[TASK][0]


def detector(config: Any, model: str = MODEL) -> ModelRuns:
    """``<run>/detection/<model>/``."""
    return run_layout(config).task(TASK).model(model)


def unit_files(config: Any, method: str, seed: int = 0, model: str = MODEL) -> DetectionFiles:
    """One (method, seed) detector run's files."""
    return DetectionFiles(detector(config, model).method(method).seed(seed).folder)


def detect_method(config: Any, method: str, force: bool = False, model: str = MODEL) -> dict:
    return run_method(config, TASK, model, method, force=force)


def detect_seed(config: Any, method: str, seed: int, model: str = MODEL) -> dict:
    return run_unit(config, TASK, model, method, seed)
