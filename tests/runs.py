"""Shortcuts the tests use to reach a run's detection results (the sample config's detector)."""
from __future__ import annotations

import json
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


def record_as_fresh(config: Any, method: str, seeds: tuple[int, ...] = (0,), model: str = MODEL) -> None:
    """Write the identity records the stages would have written for synthetic files (a unit's protocol and
    results, a method's metrics record): for tests of what is computed from them, not of freshness."""
    from fusionbench.files import atomic_write_text
    from fusionbench.tasks import get_task
    from pipelines.freshness import make_unit, metrics_identity, results_identity, unit_protocol, with_content

    task = get_task(TASK)
    for seed in seeds:
        unit = make_unit(config, task, model, method, seed)
        files = task.files(unit.folder)
        if files.results.is_file():
            protocol = unit_protocol(task, unit)
            atomic_write_text(files.protocol, json.dumps(protocol))
            atomic_write_text(files.results, json.dumps({**json.loads(files.results.read_text()),
                                                         **results_identity(task, unit, protocol)}))
    metrics = run_layout(config).metrics.method(method)
    if metrics.per_image.is_file():
        atomic_write_text(metrics.record, json.dumps({"identity": with_content(metrics_identity(config, method),
                                                                               metrics.per_image)}))
