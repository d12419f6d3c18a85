"""``run-all``: prepare -> train learned fusers -> fuse -> each downstream task -> metrics -> compare ->
report, for every method of the config and every (task, model, seed) its ``tasks`` list.

Every stage is idempotent (it skips what its manifests say is done and resumes what was
interrupted), so rerunning after a crash or a kill continues where it stopped. A failure in one
method's stage is logged (a user error in one line, a bug with its traceback), reported in the summary,
and the other methods go on; the report then shows that method as missing.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from fusion.registry import is_learned
from fusionbench.errors import FusionBenchError
from pipelines.config import configured_methods, evaluated_tasks
from pipelines.schema import Config

log = logging.getLogger("pipelines.run_all")


@dataclass
class Step:
    stage: str
    method: str
    ok: bool
    seconds: float
    detail: str = ""


@dataclass
class RunSummary:
    steps: list[Step] = field(default_factory=list)
    report: Path | None = None
    wall_s: float | None = None  # set where steps ran side by side (the local executor): their sum is not the time

    @property
    def failures(self) -> list[Step]:
        return [s for s in self.steps if not s.ok]

    def step(self, stage: str, method: str, action: Callable[[], Any]) -> Any:
        """Run one stage for one method; a failure is recorded, not raised, and logged: a problem the user
        can fix (a :class:`FusionBenchError`, a file or disk problem) as its one-line message, a bug with
        its traceback."""
        start = time.perf_counter()
        try:
            result = action()
        except Exception as error:  # noqa: BLE001 - one method's failure must not lose the others
            if isinstance(error, (FusionBenchError, OSError)):
                log.error("%s %s failed: %s", stage, method, error)
            else:
                log.exception("%s %s failed", stage, method)
            self.steps.append(Step(stage, method, False, time.perf_counter() - start, f"{type(error).__name__}: {error}"))
            return None
        self.steps.append(Step(stage, method, True, time.perf_counter() - start))
        return result

    def status(self, stage: str, method: str) -> str:
        for step in self.steps:
            if step.stage == stage and step.method == method:
                return "ok" if step.ok else "FAILED"
        return "-"


def methods_to_train(config: Config) -> list[str]:
    """Learned methods of the config that have neither weights nor an imported folder."""
    return [m for m in configured_methods(config)
            if is_learned(m) and not config.method_options(m).get("weights") and not config.method_options(m).get("from")]


def run_all(config: Config, progress: bool = True) -> RunSummary:
    """The whole benchmark for one config; returns what each step did."""
    from fusionbench.fused_set import is_complete
    from pipelines.compare import run_compare
    from pipelines.downstream import run_method, write_model_summary
    from pipelines.fuse import fuse_method
    from pipelines.metrics import run_metrics
    from pipelines.prepare import prepare_from_config
    from pipelines.report import build_report
    from pipelines.train_fusion import train_fusion

    summary = RunSummary()
    benchmark = summary.step("prepare", "-", lambda: prepare_from_config(config))
    if benchmark is None:
        return summary  # nothing downstream can run without a benchmark
    for method in methods_to_train(config):
        summary.step("train-fusion", method, lambda m=method: train_fusion(config, m))
    methods = [m for m in configured_methods(config) if summary.status("train-fusion", m) != "FAILED"]
    for method in methods:
        summary.step("fuse", method, lambda m=method: fuse_method(config, m, progress=progress))
    # only sets fused (or verified up to date) in this run: a failed step may leave an older complete set
    fused = [m for m in methods if summary.status("fuse", m) == "ok" and is_complete(benchmark, m)]
    for task, models in evaluated_tasks(config):
        for model in models:
            for method in fused:
                summary.step(f"{task.name}/{model}", method,
                             lambda t=task.name, mo=model, m=method: run_method(config, t, mo, m))
            if fused:
                summary.step(f"{task.name}/{model} summary", "-", lambda t=task.name, mo=model: write_model_summary(config, t, mo))
    if fused:
        summary.step("metrics", ",".join(fused), lambda: run_metrics(config, fused))
        summary.step("compare", "-", lambda: run_compare(config, fused))
    summary.report = summary.step("report", "-", lambda: build_report(config))
    return summary


def format_summary(config: Config, summary: RunSummary) -> str:
    """The one-screen summary printed at the end: per method what happened and each (task, model)'s primary
    statistic with its interval, then what the comparisons found."""
    from pipelines.compare import significance_sentences
    from pipelines.config import run_layout
    from pipelines.downstream import primary_summary

    lines = [f"run {config.run.name}: " + ("all steps succeeded" if not summary.failures
                                                        else f"{len(summary.failures)} step(s) failed")]
    columns = [(task, model) for task, models in evaluated_tasks(config) for model in models]
    lines.append(f"{'method':<18}{'train':>8}{'fuse':>8}   " + " | ".join(
        f"{task.name} {model}: test {task.statistics.primary.label} % (mean ± sd (n seeds) [95% interval])"
        for task, model in columns))
    for method in configured_methods(config):
        results = [(summary.status(f"{task.name}/{model}", method), primary_summary(config, task, model, method))
                   for task, model in columns]
        lines.append(f"{method:<18}{summary.status('train-fusion', method):>8}{summary.status('fuse', method):>8}   "
                     + " | ".join(f"{status if status != 'ok' else ''} {shown.split(' ', 1)[1]}".strip()
                                  for status, shown in results))
    lines += significance_sentences(config)
    for step in summary.failures:
        lines.append(f"FAILED {step.stage} {step.method}: {step.detail.splitlines()[0] if step.detail else ''}")
    total = sum(s.seconds for s in summary.steps)
    took = f"{total:.0f} s" if summary.wall_s is None else f"{summary.wall_s:.0f} s ({total:.0f} s of steps side by side)"
    lines.append(f"time: {took}; logs: {run_layout(config).logs}")
    if summary.report:
        lines.append(f"report: {summary.report}")
    return "\n".join(lines)
