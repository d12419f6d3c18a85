"""Every config key of a run: its type, its default, its range and what it does — the one defaults file.

A run's config is these defaults, then a named overlay (``pipelines/configs/<name>.yaml`` or a
file of your own), then ``-s key=value`` overrides. Overlays and overrides may only name keys
declared here: an unknown key is an error with a close-match suggestion, a value of the wrong type
or out of range is an error naming the key, both before any work starts (see
:func:`pipelines.config.load_config`).

Adding a setting: add one field to the section model below (type, default, ``Field`` bounds and a
one-line ``description``), read it as ``config.<section>.<key>`` where it is used, and put it in an
overlay only where paper or sample need another value. Options of one fusion method do not go
here: they live under ``methods.<name>`` and are checked by the fuser registry
(:func:`fusion.registry.validate_method_options`).

The defaults are the published protocol (``paper.yaml`` only names the run).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import ConfigDict, Field, PrivateAttr, create_model, field_validator

from fusionbench.settings import Section, Seed

DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda|cuda:\d+|\d+(,\d+)*|mps)$")


# Each replicate draws one index per test image (8 bytes): bootstrap x images x 8 bytes at once.
MAX_DRAWS = 10**6


# --- run ---------------------------------------------------------------------------------------

class RunSection(Section):
    name: str = Field("default", min_length=1, pattern=r"^[A-Za-z0-9._-]+$",
                      description="run name: outputs go to <run.root>/<run.name>, the report to reports/<run.name>")
    root: Path = Field(Path("runs"), description="folder holding every run folder")
    seed: Seed = Field(0, description="seed of learned-fuser training (data order, crops, initialisation)")
    device: str = Field("auto", description="auto (CUDA when available) | cpu | cuda | cuda:N | GPU indices as "
                                            "ultralytics takes them (0 or 0,1; a stage uses the first); a "
                                            "SLURM job uses the GPUs SLURM gave it")
    executor: Literal["inline", "local", "slurm"] = Field("inline", description="where run-all runs the stages: inline (this "
                                                 "process, one stage after another) | local (the job graph on this "
                                                 "machine, executor.local_workers tasks at a time) | slurm (the job "
                                                 "graph submitted through submitit; settings in the executor section)")

    @field_validator("name")
    @classmethod
    def _folder_name(cls, value: str) -> str:
        if value in (".", ".."):
            raise ValueError("a run name is a folder name: not '.' or '..'")
        return value

    @field_validator("device", mode="before")
    @classmethod
    def _device_text(cls, value: Any) -> Any:
        """``-s run.device=0`` is YAML's int 0 and ``[0, 1]`` a list: both name GPUs."""
        if isinstance(value, bool):
            raise ValueError("a device name or GPU index, not a boolean")
        if isinstance(value, int):
            return str(value)
        if isinstance(value, (list, tuple)):
            return ",".join(str(v) for v in value)
        return value

    @field_validator("device")
    @classmethod
    def _device_form(cls, value: str) -> str:
        value = value.strip()
        if not DEVICE_PATTERN.match(value):
            raise ValueError(f"{value!r} is not a device: auto, cpu, cuda, cuda:N or GPU indices like 0 or 0,1")
        return value


# --- data --------------------------------------------------------------------------------------

class SplitSection(Section):
    ratios: tuple[float, float, float] = Field((0.7, 0.1, 0.2), description="train, val, test fractions (sum 1)")
    seed: Seed = Field(0, description="seed of the random split")
    by: Literal["auto", "random", "scene", "file", "official"] = Field(
        "auto", description="random pairs | scene: whole scenes (near-duplicate consecutive frames) per split | "
                            "file: the published lists of data.split.files | official: the layout's own split "
                            "(LLVIP) | auto: file when files are given, else official when the layout has one, "
                            "else random")
    files: list[Path] = Field([], description="published split: train/val/test.txt files, a folder of them, or "
                                              "TarDAL's scenario.json (see data/README.md)")
    unlisted: Optional[Literal["train", "val", "test"]] = Field(
        None, description="split for pairs that no split file lists; null: such pairs are an error")
    scene_threshold: float = Field(0.03, gt=0, lt=1, description="mean abs. difference of 32x24 grey thumbnails "
                                                                 "below which frames are near-duplicates")

    @field_validator("ratios")
    @classmethod
    def _ratios(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if min(value) < 0 or value[0] <= 0 or value[2] <= 0 or abs(sum(value) - 1) > 1e-6:
            raise ValueError(f"{list(value)}: three fractions >= 0 summing to 1, train and test > 0")
        return value


class DataSection(Section):

    raw: Optional[Path] = Field(None, description="raw dataset folder (a layout of data/README.md); null: the "
                                                  "synthetic sample")
    layout: str = Field("auto", description="raw folder layout: auto (the first that recognises the folder) or one "
                                            "of pipelines/prepare/layouts/ (m3fd, m3fd-distributed, llvip, "
                                            "msrs_segmentation, fmb, msrs, generic)")
    benchmark: Optional[Path] = Field(None, description="prepared benchmark folder; null: <run dir>/benchmark")
    skip_bad: bool = Field(False, description="leave broken pairs out (listed in the manifest) instead of stopping")
    labels: Optional[str] = Field(None, description="label variant: msrs infrared | visible | fusion (null: fusion); "
                                                    "generic: a sub-folder of labels/ (null: labels/*.txt)")
    split: SplitSection = Field(default_factory=SplitSection)

    @field_validator("layout")
    @classmethod
    def _known_layout(cls, value: str) -> str:
        from pipelines.prepare.layouts import AUTO, LAYOUTS

        if value != AUTO and value not in LAYOUTS:
            raise ValueError(f"expected {AUTO} or one of {', '.join(LAYOUTS)}")
        return value


class SampleSection(Section):
    pairs: int = Field(60, ge=1, description="synthetic pairs (pipelines sample)")
    width: int = Field(256, ge=64, description="image width in pixels")
    height: int = Field(192, ge=48, description="image height in pixels")
    seed: Seed = Field(0, description="seed of the synthetic scenes")


class PerceptionSection(Section):
    weights: Optional[Path] = Field(None, description="ImageNet ResNet50 weights (.pth): S4Fusion's L_per and the "
                                                      "decision-layer entropy")
    torchvision: bool = Field(False, description="use torchvision's ImageNet weights (downloads when online)")
    allow_random: bool = Field(False, description="accept a randomly initialised ResNet50 (logged, marked in the "
                                                  "report); the sample's opt-in")


# --- fusion ------------------------------------------------------------------------------------

class ExtraFolder(Section):
    path: Path = Field(description="folder of extra fusion-only training pairs")
    fraction: float = Field(1.0, gt=0, le=1, description="fraction of its pairs to use")
    seed: Seed = Field(0, description="seed choosing that fraction")
    ir: Optional[str] = Field(None, description="its IR sub-folder (null: found by name)")
    vi: Optional[str] = Field(None, description="its VI sub-folder (null: found by name)")


class TrainSection(Section):
    """Training defaults shared by every learned fuser; ``methods.<method>.train`` overrides any of them
    for one method (checked by the fuser registry against fusion.learned.trainer.TrainSettings)."""

    epochs: int = Field(800, ge=1, description="training epochs of a learned fuser")
    batch_size: int = Field(20, ge=1, description="global batch (split across DDP processes)")
    crop: Optional[int] = Field(None, ge=8, description="square training crop in pixels; null: the architecture's "
                                                       "default (S4Fusion: 229)")
    workers: int = Field(8, ge=0, description="data-loading processes")
    optimizer: Literal["adamw", "adam"] = Field("adamw", description="optimizer (weight_decay applies to both)")
    lr_schedule: Literal["warmup_cosine", "step"] = Field("warmup_cosine", description="warmup_cosine: lr_start -> "
                                                          "lr_peak, half cosine to lr_end; step: lr_peak x lr_gamma "
                                                          "every lr_step_epochs")
    lr_start: float = Field(3.0e-4, gt=0, description="learning rate at the first step (linear warm-up from here)")
    lr_peak: float = Field(1.5e-3, gt=0, description="learning rate after warm-up (cosine decay from here)")
    lr_end: float = Field(6.0e-4, gt=0, description="learning rate at the last step")
    warmup_epochs: int = Field(10, ge=0, description="epochs of linear warm-up")
    lr_step_epochs: int = Field(20, ge=1, description="step schedule: epochs between decays")
    lr_gamma: float = Field(0.5, gt=0, le=1, description="step schedule: factor per decay")
    weight_decay: float = Field(0.01, ge=0, description="weight decay")
    grad_clip: Optional[float] = Field(None, gt=0, description="max gradient norm per parameter group, or null")
    flips: bool = Field(True, description="random horizontal/vertical flips of the training crops")
    stage_epochs: Optional[list[int]] = Field(None, description="epochs of each training stage but the last "
                                                                "(null: the architecture's shares)")
    small: Literal["pad", "skip"] = Field("pad", description="images smaller than the crop: pad (reflect) | skip")
    amp: Optional[Literal["bf16", "fp16", "none"]] = Field(None, description="autocast dtype; null: bf16 on Ampere "
                                                                             "and newer GPUs, fp16 on Volta/Turing, "
                                                                             "none on older GPUs and the CPU")
    extra: list[ExtraFolder] = Field(default_factory=list, description="extra fusion-only training folders")


class FusionSection(Section):
    methods: list[str] = Field(["ir", "vi", "average", "max", "laplacian", "dwt", "gff", "tif", "s4fusion", "smfnet"],
                               min_length=1, description="the methods a run fuses, detects and reports")
    workers: int = Field(8, ge=1, description="processes for CPU fusers")
    batch_size: Optional[int] = Field(None, ge=1, description="pairs per forward pass of a learned fuser; null: 8 "
                                                              "on CUDA, 1 on CPU")
    scan_backend: Literal["auto", "mamba", "triton", "cpu"] = Field(
        "auto", description="selective scan of learned fusers: auto (CUDA: mamba-ssm's kernel when installed, "
                            "else Triton; CPU: numba) | mamba | triton | cpu")
    train: TrainSection = Field(default_factory=TrainSection)

    @field_validator("methods")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        repeated = sorted({m for m in value if value.count(m) > 1})
        if repeated:
            raise ValueError(f"listed twice: {', '.join(repeated)}")
        return value


# --- detection, metrics, report ----------------------------------------------------------------

class MetricsSection(Section):
    split: Literal["train", "val", "test"] = Field("test", description="split whose fused images are scored")
    entropy: bool = Field(True, description="ResNet50 decision-layer entropy per fused image")
    workers: int = Field(8, ge=1, description="threads computing the fusion metrics")
    methods: Optional[list[str]] = Field(None, description="methods to score; null: fusion.methods")
    convention: Literal["cddfuse", "vifb", "ivif_zoo", "tang", "exact"] = Field(
        "cddfuse", description="fusion-metric convention (fusion.metrics.CONVENTIONS): cddfuse = CDDFuse's "
                               "Evaluator.py, vifb = VIFB's MATLAB code, ivif_zoo = IVIF_ZOO's "
                               "eval_torch.py, tang = Linfeng-Tang's MATLAB kit, exact = float64 "
                               "without quirks")


class ReportSection(Section):
    dir: Optional[Path] = Field(None, description="report folder; null: reports/<run.name>")
    qualitative: int = Field(6, ge=0, description="test images in the qualitative grid")
    entropy_pairs: list[tuple[str, str]] = Field(default_factory=list, description="method pairs whose entropy "
                                                                                   "histograms are overlaid")
    compare_to: list[str] = Field(["ir", "vi", "best"], description="references every method is compared with "
                                  "(method names; best: the highest mean mAP@50, or best mean of each metric)")


class StatsSection(Section):
    bootstrap: int = Field(1000, ge=1, description="bootstrap replicates of every interval (test images, and "
                                                   "detector seeds when there are several)")
    permutations: int = Field(1000, ge=1, description="permutations of each paired mAP test")
    alpha: float = Field(0.05, gt=0, lt=1, description="significance level of the Holm-adjusted p-values")
    seed: Seed = Field(0, description="seed of the bootstrap and permutation draws (recorded in the report)")

    @field_validator("bootstrap", "permutations")
    @classmethod
    def _bounded(cls, value: int) -> int:
        if value > MAX_DRAWS:
            raise ValueError(f"at most {MAX_DRAWS:,}: the draws are held at once, {value:,} x test images x 8 bytes "
                             f"= {value * 8 * 1000 / 2**30:,.0f} GiB per 1,000 test images")
        return value


def default_tasks() -> dict[str, list[str]]:
    """The tasks that run unless a config says otherwise, with their default models."""
    from fusionbench.tasks import tasks

    return {name: list(task.default_models) for name, task in tasks().items() if task.default}


# --- executor ----------------------------------------------------------------------------------

JOB_KINDS = {"train": "a learned fuser's training", "fuse": "one method's fused set (a classical fuser asks for "
             "no GPU)", "downstream": "one (task, model, method, seed) run: a detector, a segmenter, ...",
             "metrics": "one method's fusion metrics", "compare": "the closing job: summaries, compare, report"}


def _per_kind(name: str, what: str, **defaults: int) -> type[Section]:
    """A section with one number per kind of job of the grid (:mod:`pipelines.grid`)."""
    fields: dict[str, Any] = {kind: (int, Field(defaults[kind], ge=0, description=f"{what}: {doc}"))
                              for kind, doc in JOB_KINDS.items()}
    return create_model(name, __base__=Section, **fields)


JobMinutes = _per_kind("JobMinutes", "time limit in minutes (warned before it, a job requeues itself)",
                       train=720, fuse=120, downstream=240, metrics=60, compare=60)
JobGpus = _per_kind("JobGpus", "GPUs (train > 1: DDP over that many GPUs of one node)",
                    train=1, fuse=1, downstream=1, metrics=0, compare=0)
JobCpus = _per_kind("JobCpus", "CPUs", train=8, fuse=8, downstream=8, metrics=8, compare=2)
JobMemory = _per_kind("JobMemory", "memory in GB (0: the cluster's default)",
                      train=32, fuse=32, downstream=32, metrics=16, compare=16)


class ExecutorSection(Section):
    """Settings of the job graph: ``local_workers`` for ``run.executor=local``, the rest for
    ``run.executor=slurm`` (what every job of the grid asks for). The defaults run on a plain cluster (no
    partition, account or QOS named: the cluster's defaults apply)."""

    local_workers: int = Field(2, ge=1, description="run.executor=local: tasks of the grid running at once, each in "
                                                    "its own process on cores / local_workers CPU threads")

    partition: Optional[str] = Field(None, description="SLURM partition (null: the cluster's default)")
    account: Optional[str] = Field(None, description="SLURM account to charge (null: your default)")
    qos: Optional[str] = Field(None, description="SLURM quality of service (null: the default)")
    constraint: Optional[str] = Field(None, description="node features, e.g. a100|h100 (null: any node)")
    time: JobMinutes = Field(default_factory=JobMinutes)
    gpus: JobGpus = Field(default_factory=JobGpus)
    cpus: JobCpus = Field(default_factory=JobCpus)
    mem_gb: JobMemory = Field(default_factory=JobMemory)
    array_parallelism: int = Field(256, ge=1, description="tasks of one job array running at once (seeds, shards)")
    fuse_shards: int = Field(1, ge=1, description="a learned method's fusion as a job array of this many shards "
                                                  "(each fuses every n-th pair on its own GPU; the last to end "
                                                  "completes the set); 1: one job")
    signal_delay_s: int = Field(120, ge=1, description="seconds before the time limit at which SLURM warns a job "
                                                       "(USR2): it then requeues itself to resume")
    max_requeues: int = Field(20, ge=0, description="times a job may requeue itself at its time limit")
    setup: list[str] = Field(default_factory=list, description="shell lines each job runs first, e.g. 'module load "
                                                               "cuda' or 'source /path/venv/bin/activate'")
    sbatch: dict[str, Any] = Field(default_factory=dict, description="further sbatch options for every job, e.g. "
                                                                    "{exclude: node7, mail_type: FAIL}")
    folder: Optional[Path] = Field(None, description="job scripts and logs (null: <run dir>/slurm/jobs)")
    poll_s: float = Field(5.0, gt=0, description="seconds between two looks at squeue while run-all waits")


# --- the whole config --------------------------------------------------------------------------

class Config(Section):
    """One run's settings: the sections above, the options of each method, and one section per downstream
    task (declared by the task, e.g. ``detect``; :func:`pipelines.config.validate` checks and adds them)."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    run: RunSection = Field(default_factory=RunSection)
    data: DataSection = Field(default_factory=DataSection)
    sample: SampleSection = Field(default_factory=SampleSection)
    perception: PerceptionSection = Field(default_factory=PerceptionSection)
    fusion: FusionSection = Field(default_factory=FusionSection)
    methods: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="options per fusion method, e.g. {gff: {r1: 45}, s4fusion: {weights: model.pkl}, "
                    "defusion: {from: /path/to/results, name: DeFusion}}")
    tasks: dict[str, list[str]] = Field(
        default_factory=default_tasks,
        description="downstream tasks the run evaluates, each with the models it trains per method and seed "
                    "(`pipelines config --tasks` lists every task and model); [] leaves a task out. Each task's "
                    "settings are a section of their own, named by the task")
    metrics: MetricsSection = Field(default_factory=MetricsSection)
    report: ReportSection = Field(default_factory=ReportSection)
    stats: StatsSection = Field(default_factory=StatsSection)
    executor: ExecutorSection = Field(default_factory=ExecutorSection)

    _source: Optional[Path] = PrivateAttr(None)

    @property
    def source(self) -> Optional[Path]:
        """The overlay file this config was read from (None for the bare defaults)."""
        return self._source

    def task_settings(self, task: str) -> Any:
        """The validated settings section of a downstream task (``config.detect`` for detection)."""
        from fusionbench.tasks import get_task

        return getattr(self, get_task(task).section)

    def method_options(self, name: str) -> dict[str, Any]:
        """``methods.<name>``, or no options."""
        return dict(self.methods.get(name, {}))
