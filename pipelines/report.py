"""The report stage: ``reports/<run>/index.html`` from what the run's stages have written.

Read-only: it computes nothing again. Every result it shows is first checked against this config by the
one freshness rule (:mod:`pipelines.freshness`); a stale one (other settings, data or code) is shown as
stale with its reason instead of its numbers, and the comparisons only when their manifest names exactly
today's fresh inputs.
"""
from __future__ import annotations

from pathlib import Path

from fusionbench.benchmark import Benchmark, export_split
from fusionbench.tasks import get_model
from pipelines.config import configured_methods, evaluated_tasks, run_layout
from pipelines.freshness import compare_reasons, method_summary_reasons, metrics_reasons
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
        stale=stale_results(config),
    )


def stale_results(config: Config) -> dict[str, list[str]]:
    """Why each result the report would show is stale, by what it is (``<task>/<model>/<method>``,
    ``metrics/<method>``, ``compare``); absent: fresh or missing."""
    layout = run_layout(config)
    stale = {}
    for task, models in evaluated_tasks(config):
        for model in models:
            for method in configured_methods(config):
                if layout.task(task.name).model(model).method(method).summary.is_file():
                    stale[f"{task.name}/{model}/{method}"] = method_summary_reasons(config, task, model, method)
    for method in configured_methods(config):
        if layout.metrics.method(method).per_image.is_file():
            stale[f"metrics/{method}"] = metrics_reasons(config, method)
    stale["compare"] = compare_reasons(config)
    return {key: reasons for key, reasons in stale.items() if reasons}


def build_report(config: Config) -> Path:
    """Build the report of a run (what ``run-all`` calls); returns the HTML path."""
    inputs = report_inputs(config)
    export_split(inputs.benchmark, inputs.layout.pages.split_lists)  # the exact lists, to publish with a paper
    return build_page(inputs)
