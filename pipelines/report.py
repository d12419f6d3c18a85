"""The report stage: ``reports/<run>/index.html`` from what the run's stages have written."""
from __future__ import annotations

from pathlib import Path

from fusionbench.benchmark import Benchmark, export_split
from fusionbench.tasks import get_model
from pipelines.config import configured_methods, evaluated_tasks, run_layout
from pipelines.schema import Config
from reports.builder import RunInputs, TaskInputs
from reports.builder import build_report as build_page


def report_inputs(config: Config) -> RunInputs:
    """The report builder's view of a run: every path comes from the config, nothing is guessed."""
    layout = run_layout(config)
    return RunInputs(
        name=config.run.name,
        config=config.model_dump(mode="json"),
        benchmark=Benchmark(layout.benchmark),
        methods=configured_methods(config),
        layout=layout,
        tasks=[TaskInputs(task, [get_model(task.name, m) for m in models], config.task_settings(task.name),
                          task.seeds(config.task_settings(task.name))) for task, models in evaluated_tasks(config)],
        qualitative=config.report.qualitative,
        entropy_pairs=[list(pair) for pair in config.report.entropy_pairs or []],
    )


def build_report(config: Config) -> Path:
    """Build the report of a run (what ``run-all`` calls); returns the HTML path."""
    inputs = report_inputs(config)
    export_split(inputs.benchmark, inputs.layout.pages.split_lists)  # the exact lists, to publish with a paper
    return build_page(inputs)
