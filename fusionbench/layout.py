"""Where every artifact of a run lives: the one place its file names are written down.

Stages write and read their files through these objects, and so does the report; no other module spells
an artifact's name, so a producer and its consumers cannot drift apart (``tests/test_layout.py`` checks
the sources). Neutral: imports no project package, so ``fusion/``, ``detection/`` and ``reports/`` may use
it. ``pipelines.config.run_layout`` builds the :class:`RunLayout` of a config::

    <root>/logs/<stage>.log                       every command's log
    <root>/sample_raw/                            the synthetic raw dataset (``pipelines sample``)
    <root>/fusion/<method>/                       a learned fuser's training (FuserFiles; written by the
                                                  trainer in fusion/, read by fuse and the report)
    <root>/<task>/<model>/<method>/seed<k>/       one downstream run (UnitFiles; the task's evidence beside)
    <root>/<task>/<model>/<method>/summary.json   across seeds (MethodRuns.summary)
    <root>/<task>/<model>/summary.csv             one row per method (ModelRuns.summary)
    <root>/metrics/<method>/{metrics,entropy}.csv per image (MethodMetrics), metrics/summary.csv
    <root>/compare/<task>{,_intervals}.csv, metric*.csv, manifest.json   intervals and tests (CompareFiles)
    <report>/index.html, figures/, tables/        the report (ReportFiles)
    <root>/slurm/grid.json, jobs/                 run-all's SLURM job graph: ids, states, logs (GridFiles)
    <benchmark>/manifest.json                     the prepared benchmark (its other files: fusionbench.benchmark)

A folder whose work is marked done by a manifest (the benchmark, a fused set, the compare stage) names it
:data:`MANIFEST`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class FuserFiles:
    """A learned fuser's training folder: checkpoints every epoch and per-step / per-epoch logs."""

    folder: Path

    @property
    def last(self) -> Path:
        """Checkpoint of the latest finished epoch (exact resume)."""
        return self.folder / "last.pt"

    @property
    def best(self) -> Path:
        """Checkpoint of the best validation epoch: what ``fuse`` loads by default."""
        return self.folder / "best.pt"

    @property
    def loss(self) -> Path:
        """Training losses, one row per step."""
        return self.folder / "loss.csv"

    @property
    def val(self) -> Path:
        """Validation losses, one row per epoch."""
        return self.folder / "val.csv"

    @property
    def loss_curve(self) -> Path:
        return self.folder / "loss_curve.png"

    @property
    def outputs(self) -> tuple[Path, ...]:
        """What every training writes (an architecture's recorders add their own CSV, e.g. S4Fusion's delta.csv)."""
        return self.last, self.best, self.loss, self.val, self.loss_curve


@dataclass(frozen=True)
class UnitFiles:
    """One (task, model, method, seed) run. These files are the downstream stage's; a task writes its
    evidence beside them under names of its own (its :attr:`fusionbench.tasks.Task.files` class)."""

    folder: Path

    @property
    def protocol(self) -> Path:
        """Settings and data identities the run started with (a rerun with other settings stops)."""
        return self.folder / "protocol.json"

    @property
    def results(self) -> Path:
        """Scores with their intervals; written last, so it marks the run done."""
        return self.folder / "results.json"

    @property
    def results_table(self) -> Path:
        """``results`` as one table row."""
        return self.folder / "results.csv"

    @property
    def evidence(self) -> tuple[Path, ...]:
        """The per-image evidence the statistics are computed from (a task's files class names it)."""
        return ()

    @property
    def derived(self) -> tuple[Path, ...]:
        """Files computed after training, each from those before it (the evidence last): their content
        hashes are recorded in ``results`` and checked before any use; a differing one is removed and
        computed again by the task. Default: the evidence."""
        return self.evidence


@dataclass(frozen=True)
class MethodRuns:
    """One method's runs of one model (one per seed) and their across-seed summary."""

    folder: Path

    def seed(self, seed: int) -> UnitFiles:
        return UnitFiles(self.folder / f"seed{seed}")

    @property
    def summary(self) -> Path:
        """Mean, sd and two-level bootstrap interval over the seeds."""
        return self.folder / "summary.json"


@dataclass(frozen=True)
class ModelRuns:
    """Every method's runs of one model of a task (a detector, a segmenter)."""

    folder: Path

    def method(self, method: str) -> MethodRuns:
        return MethodRuns(self.folder / method)

    def method_summaries(self) -> list[Path]:
        """The across-seed summaries present, sorted by method."""
        return sorted(self.folder.glob(f"*/{self.method('*').summary.name}"))

    @property
    def summary(self) -> Path:
        """One row per method."""
        return self.folder / "summary.csv"


@dataclass(frozen=True)
class TaskRuns:
    """A downstream task's folder: one sub-folder per model."""

    folder: Path

    def model(self, model: str) -> ModelRuns:
        return ModelRuns(self.folder / model)

    @property
    def workspace(self) -> Path:
        """Shared by the task's runs (a library's settings, caches): never results."""
        return self.folder / ".workspace"


@dataclass(frozen=True)
class MethodMetrics:
    folder: Path

    @property
    def per_image(self) -> Path:
        """Every metric of the convention, one row per image."""
        return self.folder / "metrics.csv"

    @property
    def entropy(self) -> Path:
        """Decision-layer entropy per image."""
        return self.folder / "entropy.csv"

    @property
    def entropy_source(self) -> Path:
        """Which ResNet50 weights produced ``entropy``, and its identity record."""
        return self.folder / "entropy.json"

    @property
    def record(self) -> Path:
        """The identity ``per_image`` was computed with (:mod:`fusionbench.identity`)."""
        return self.folder / "metrics.json"


@dataclass(frozen=True)
class MetricsStage:
    folder: Path

    def method(self, method: str) -> MethodMetrics:
        return MethodMetrics(self.folder / method)

    @property
    def summary(self) -> Path:
        """Per method: means and counts of every metric, entropy statistics."""
        return self.folder / "summary.csv"


@dataclass(frozen=True)
class TaskComparisons:
    """One task's compare tables (every model of the task, a ``model`` column)."""

    folder: Path
    task: str

    @property
    def intervals(self) -> Path:
        """Per model, method and statistic: mean over seeds, sd, 95% interval."""
        return self.folder / f"{self.task}_intervals.csv"

    @property
    def tests(self) -> Path:
        """Per (model, method, reference): the paired tests of the task's primary statistic."""
        return self.folder / f"{self.task}.csv"


@dataclass(frozen=True)
class CompareFiles:
    folder: Path

    def task(self, task: str) -> TaskComparisons:
        return TaskComparisons(self.folder, task)

    @property
    def metric_intervals(self) -> Path:
        return self.folder / "metric_intervals.csv"

    @property
    def metrics(self) -> Path:
        """Paired tests of every fusion metric."""
        return self.folder / "metrics.csv"

    @property
    def manifest(self) -> Path:
        """Settings and inputs' fingerprint; written last, so it marks the stage done."""
        return self.folder / MANIFEST


@dataclass(frozen=True)
class ReportFiles:
    folder: Path

    @property
    def index(self) -> Path:
        return self.folder / "index.html"

    @property
    def figures(self) -> Path:
        return self.folder / "figures"

    @property
    def tables(self) -> Path:
        return self.folder / "tables"

    @property
    def split_lists(self) -> Path:
        """The run's split as publishable lists (``pipelines export-split``'s output), linked from the page."""
        return self.folder / "split_lists"


@dataclass(frozen=True)
class GridFiles:
    """The job graph ``run-all`` submitted to SLURM (``run.executor=slurm``)."""

    folder: Path

    @property
    def state(self) -> Path:
        """Every job's key, SLURM id, state and log paths; what ``status``, ``cancel`` and a second run-all read."""
        return self.folder / "grid.json"

    @property
    def jobs(self) -> Path:
        """submitit's files: each job's script, pickled call, result and logs (``executor.folder`` moves it)."""
        return self.folder / "jobs"

    @property
    def submit_lock(self) -> Path:
        """Held while a run-all submits, so two cannot submit the same grid."""
        return self.folder / ".submit.lock"


@dataclass(frozen=True)
class RunLayout:
    """Every path of one run: ``root`` holds what the stages produce, ``benchmark`` the prepared
    benchmark (may be shared between runs), ``report`` the generated report."""

    root: Path
    benchmark: Path
    report: Path

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def log(self, stage: str) -> Path:
        return self.logs / f"{stage}.log"

    @property
    def sample_raw(self) -> Path:
        return self.root / "sample_raw"

    @property
    def benchmark_manifest(self) -> Path:
        """Written last by ``prepare``: a benchmark folder with it is complete."""
        return self.benchmark / MANIFEST

    @property
    def fusion_stage(self) -> Path:
        return self.root / "fusion"

    def fusion(self, method: str) -> FuserFiles:
        return FuserFiles(self.fusion_stage / method)

    def task(self, task: str) -> TaskRuns:
        """A downstream task's runs: ``<root>/<task>/<model>/<method>/seed<k>/``."""
        return TaskRuns(self.root / task)

    @property
    def legacy_detect(self) -> Path:
        """Where runs made before downstream tasks kept their detectors (``detect/<method>/seed<k>/``)."""
        return self.root / "detect"

    @property
    def metrics(self) -> MetricsStage:
        return MetricsStage(self.root / "metrics")

    @property
    def compare(self) -> CompareFiles:
        return CompareFiles(self.root / "compare")

    @property
    def grid(self) -> GridFiles:
        return GridFiles(self.root / "slurm")

    @property
    def pages(self) -> ReportFiles:
        """The report's files (``report`` is its folder)."""
        return ReportFiles(self.report)
