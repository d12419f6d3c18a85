"""Where every artifact of a run lives: the one place its file names are written down.

Stages write and read their files through these objects, and so does the report; no other module spells
an artifact's name, so a producer and its consumers cannot drift apart (``tests/test_layout.py`` checks
the sources). Neutral: imports no project package, so ``fusion/``, ``detection/`` and ``reports/`` may use
it. ``pipelines.config.run_layout`` builds the :class:`RunLayout` of a config::

    <root>/logs/<stage>.log                       every command's log
    <root>/sample_raw/                            the synthetic raw dataset (``pipelines sample``)
    <root>/fusion/<method>/                       a learned fuser's training (FuserFiles; written by the
                                                  trainer in fusion/, read by fuse and the report)
    <root>/detect/<method>/seed<k>/               one detector run (SeedFiles)
    <root>/detect/<method>/summary.json           across seeds (MethodDetection.summary)
    <root>/detect/summary.csv                     one row per method (DetectStage.summary)
    <root>/metrics/<method>/{metrics,entropy}.csv per image (MethodMetrics), metrics/summary.csv
    <root>/compare/*.csv, manifest.json           intervals and tests (CompareFiles)
    <report>/index.html, figures/, tables/        the report (ReportFiles)
    <root>/slurm/grid.json, jobs/                 run-all's SLURM job graph: ids, states, logs (GridFiles)
    <benchmark>/manifest.json                     the prepared benchmark (its other files: pipelines.benchmark)

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
class SeedFiles:
    """One (method, seed) detector run."""

    folder: Path

    @property
    def protocol(self) -> Path:
        """Settings the run started with (a rerun with others stops)."""
        return self.folder / "protocol.json"

    @property
    def data_yaml(self) -> Path:
        """Ultralytics' dataset file."""
        return self.folder / "data.yaml"

    @property
    def train(self) -> Path:
        """Ultralytics' training folder (its own results.csv and weights/)."""
        return self.folder / "train"

    @property
    def ultralytics_test(self) -> Path:
        """Ultralytics' own validation of the selected weights on the test split."""
        return self.folder / "ultralytics_test"

    @property
    def predictions(self) -> Path:
        """COCO detections on the test split."""
        return self.folder / "test_predictions.json"

    @property
    def matches(self) -> Path:
        """Per test image and class: scores, true-positive flags, ground-truth counts."""
        return self.folder / "matches.npz"

    @property
    def results(self) -> Path:
        """Scores with their intervals; written last, so it marks the run done."""
        return self.folder / "results.json"

    @property
    def results_table(self) -> Path:
        """``results`` as one table row."""
        return self.folder / "results.csv"

    @property
    def outputs(self) -> tuple[Path, ...]:
        """Everything the run writes (the old single-seed layout had them directly in the method folder)."""
        return (self.protocol, self.data_yaml, self.train, self.ultralytics_test, self.predictions, self.matches,
                self.results, self.results_table)


@dataclass(frozen=True)
class MethodDetection:
    """One method's detector runs and their across-seed summary."""

    folder: Path

    def seed(self, seed: int) -> SeedFiles:
        return SeedFiles(self.folder / f"seed{seed}")

    @property
    def summary(self) -> Path:
        """Mean, sd and two-level bootstrap interval over the seeds."""
        return self.folder / "summary.json"


@dataclass(frozen=True)
class DetectStage:
    folder: Path

    def method(self, method: str) -> MethodDetection:
        return MethodDetection(self.folder / method)

    def method_summaries(self) -> list[Path]:
        """The across-seed summaries present, sorted by method."""
        return sorted(self.folder.glob(f"*/{self.method('*').summary.name}"))

    @property
    def summary(self) -> Path:
        """One row per method."""
        return self.folder / "summary.csv"

    @property
    def ultralytics_settings(self) -> Path:
        """Ultralytics' settings folder, kept inside the run (offline)."""
        return self.folder / ".ultralytics"


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
        """Which ResNet50 weights produced ``entropy``."""
        return self.folder / "entropy.json"


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
class CompareFiles:
    folder: Path

    @property
    def detection_intervals(self) -> Path:
        return self.folder / "detection_intervals.csv"

    @property
    def detection(self) -> Path:
        """Paired mAP tests between methods."""
        return self.folder / "detection.csv"

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

    @property
    def detect(self) -> DetectStage:
        return DetectStage(self.root / "detect")

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
