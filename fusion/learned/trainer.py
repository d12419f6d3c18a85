"""Training any registered architecture: stages, per-group schedules, AMP, DDP, a checkpoint every
epoch, exact resume.

Exactness: the data order and every crop/flip depend only on (seed, epoch) (see :mod:`.data`), and
``last.pt`` holds the model, optimizer, scheduler, grad-scaler and RNG states at an epoch boundary, so
on a CPU ``N`` epochs straight and ``N/2`` + resume + ``N/2`` give identical weights, across a stage
boundary too (the stage is a function of the epoch).

Stages (:class:`~fusion.learned.architecture.Stage`): each updates some parameter groups (the others
keep their weights: their gradients are dropped before the step). Each group has its own learning-rate
schedule, which starts with the first stage that trains it, and its own gradient clipping.

Outputs in ``out_dir``, named by :class:`fusionbench.layout.FuserFiles`: the last and the best checkpoint
(lowest validation loss of the last stage reached), the per-step and per-epoch loss logs, the loss curve,
and one CSV per recorder (S4Fusion: delta.csv).
Under torchrun (DDP) only rank 0 writes.
"""
from __future__ import annotations

import csv
import io
import logging
import math
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, Mapping, Sequence

import torch
import torch.distributed as dist
from pydantic import Field
from torch import nn
from tqdm import tqdm

from fusion.learned.architecture import Architecture, Stage, config_dict
from fusion.learned.checkpoint import load_checkpoint, save_checkpoint
from fusion.learned.data import CropPairs, TrainPair, make_loader
from fusion.learned.precision import amp_dtype
from fusion.learned.schedules import SCHEDULES, step_decay, warmup_cosine
from fusion.learned.state import rng_state, set_rng_state
from fusionbench.errors import FusionBenchError
from fusionbench.files import atomic_write_bytes, atomic_write_text
from fusionbench.layout import FuserFiles

log = logging.getLogger(__name__)

OPTIMIZERS = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}


class TrainingError(FusionBenchError, ValueError):
    """Training settings, data or an earlier run's checkpoint that this training cannot use."""


Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]  # a learning rate, a gradient norm


@dataclass(frozen=True)
class TrainSettings:
    """Hyper-parameters shared by every architecture (defaults: S4Fusion's paper, Sec. IV-A1).

    crop: training crop side (None: the architecture's default crop). lr_schedule: "warmup_cosine"
    (lr_start -> lr_peak over warmup_epochs, half cosine to lr_end) or "step" (lr_peak times lr_gamma
    every lr_step_epochs). grad_clip: max gradient norm per parameter group, or None. flips: random
    flips of the training crops. stage_epochs: epochs of each stage but the last (None: the stages'
    shares). amp: None (automatic, see :mod:`.precision`), "bf16", "fp16" or "none".
    """

    epochs: Annotated[int, Field(ge=1)] = 800
    batch_size: Annotated[int, Field(ge=1)] = 20
    crop: Annotated[int, Field(ge=8)] | None = None
    workers: Annotated[int, Field(ge=0)] = 8
    optimizer: str = "adamw"
    lr_schedule: str = "warmup_cosine"
    lr_start: Positive = 3e-4
    lr_peak: Positive = 1.5e-3
    lr_end: Positive = 6e-4
    warmup_epochs: Annotated[int, Field(ge=0)] = 10
    lr_step_epochs: Annotated[int, Field(ge=1)] = 20
    lr_gamma: Annotated[float, Field(gt=0, le=1)] = 0.5
    weight_decay: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.01
    grad_clip: Positive | None = None
    flips: bool = True
    stage_epochs: tuple[int, ...] | None = None
    amp: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.stage_epochs is not None:
            object.__setattr__(self, "stage_epochs", tuple(int(e) for e in self.stage_epochs))
        if self.optimizer not in OPTIMIZERS:
            raise TrainingError(f"optimizer {self.optimizer!r}: expected one of {', '.join(OPTIMIZERS)}")
        if self.lr_schedule not in SCHEDULES:
            raise TrainingError(f"learning-rate schedule {self.lr_schedule!r}: expected one of {', '.join(SCHEDULES)}")
        if self.epochs < 1 or self.batch_size < 1:
            raise TrainingError(f"epochs ({self.epochs}) and batch size ({self.batch_size}) must be at least 1")


def stage_starts(stages: Sequence[Stage], settings: TrainSettings) -> list[int]:
    """The first epoch of each stage (the last stage runs to the end)."""
    if settings.stage_epochs is not None:
        if len(settings.stage_epochs) != len(stages) - 1:
            raise TrainingError(f"stage epochs {list(settings.stage_epochs)}: expected {len(stages) - 1} number(s), "
                                f"one per stage but the last ({', '.join(s.name for s in stages)})")
        lengths = list(settings.stage_epochs)
    else:
        lengths = [round(s.share * settings.epochs) for s in stages[:-1]]
    starts = [0]
    for length in lengths:
        starts.append(starts[-1] + length)
    if starts[-1] >= settings.epochs:
        raise TrainingError(f"stages {', '.join(s.name for s in stages)} start at epochs {starts}: "
                            f"the last one starts after all {settings.epochs} epochs")
    return starts


class Trainer:
    """One training run of one method into ``out_dir``; resumes from ``out_dir/last.pt`` when asked.

    ``perception``: the frozen ImageNet network and its provenance, for architectures whose loss needs
    it. ``info``: plain values stored in every checkpoint (e.g. where the perception weights came from).
    """

    def __init__(self, arch: Architecture, config: Any, loss: Any, train_pairs: Sequence[TrainPair],
                 val_pairs: Sequence[TrainPair], out_dir: str | Path, settings: TrainSettings, *,
                 method: str, perception: nn.Module | None = None, info: Mapping[str, Any] | None = None,
                 device: str | torch.device = "cpu", resume: bool = True):
        self.arch, self.config, self.loss_settings = arch, config, loss
        self.settings, self.method, self.out_dir = settings, method, Path(out_dir)
        self.files = FuserFiles(self.out_dir)
        self.info = dict(info or {})
        self.device = torch.device(device)
        self.rank, self.world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        if not train_pairs:
            raise TrainingError(f"{method}: no training pairs (empty TRAIN split and no extra folders)")
        if arch.needs_perception and perception is None:
            raise TrainingError(f"{method}: the {arch.name} loss needs the perception network")
        self.crop = settings.crop or arch.default_crop
        if not arch.valid_size(config, self.crop):
            raise TrainingError(f"training crop {self.crop} is not a valid {arch.name} size; the nearest valid one "
                                f"above is {arch.next_valid_size(config, self.crop)}")
        if settings.batch_size % self.world:
            raise TrainingError(f"batch size {settings.batch_size} (the global batch) does not split over "
                                f"{self.world} processes")
        self.stages, self.starts = arch.stages, stage_starts(arch.stages, settings)
        self.objective = arch.build_objective(loss, perception).to(self.device)
        torch.manual_seed(settings.seed)  # the same initial weights for the same seed
        self.model = arch.build(config).to(self.device)
        self.recorders = list(arch.recorders(config))
        batch = settings.batch_size // self.world
        self.train_names = [p.name for p in train_pairs]
        self.train_set = CropPairs(train_pairs, self.crop, settings.seed, augment=True, flips=settings.flips)
        self.loader = make_loader(self.train_set, batch, settings.workers, settings.seed, rank=self.rank,
                                  world=self.world)
        self.val_loader = make_loader(CropPairs(val_pairs, self.crop, augment=False), batch,
                                      settings.workers, settings.seed, shuffle=False) if val_pairs else None
        self.steps_per_epoch = len(self.loader)
        self.groups = self._parameter_groups()
        optimizer = OPTIMIZERS[settings.optimizer]
        self.optimizer = optimizer([{"params": params} for params in self.groups.values()], lr=settings.lr_peak,
                                   weight_decay=settings.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, [self._lr_factor(self._group_start(name)) for name in self.groups])
        self.amp_dtype = amp_dtype(settings.amp, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.net: nn.Module = self.model
        if self.world > 1:  # parameters unused in a forward pass (a stage, an unused fusion layer) are normal
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True)
        self.epoch, self.step, self.best_val = 0, 0, math.inf
        if resume and self.last_path.is_file():
            self._resume()
        elif self.rank == 0:  # a fresh start: nothing of an earlier run may mix into the new outputs
            for path in self.outputs:
                path.unlink(missing_ok=True)

    # -- set-up --

    @property
    def outputs(self) -> list[Path]:
        """Every file a training writes: the layout's, and one CSV per recorder."""
        return [*self.files.outputs, *self.recorder_files]

    @property
    def recorder_files(self) -> list[Path]:
        return [self.out_dir / r.filename for r in self.recorders]

    def _parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Group name -> parameters, from the architecture's prefixes (one group "all" without them)."""
        named = list(self.model.named_parameters())
        if self.arch.param_groups is None:
            return {"all": [p for _, p in named]}
        prefixes = dict(self.arch.param_groups(self.model))
        groups: dict[str, list[nn.Parameter]] = {name: [] for name in prefixes}
        for key, param in named:
            owner = next((g for g, ps in prefixes.items() if any(key.startswith(p) for p in ps)), None)
            if owner is None:
                raise TrainingError(f"{self.arch.name}: parameter {key!r} belongs to no parameter group "
                                    f"({', '.join(prefixes)})")
            groups[owner].append(param)
        return groups

    def _group_start(self, group: str) -> int:
        """The first epoch that trains ``group`` (its schedule starts there)."""
        for stage, start in zip(self.stages, self.starts):
            if stage.groups is None or group in stage.groups:
                return start
        return self.settings.epochs

    def _lr_factor(self, start_epoch: int) -> Callable[[int], float]:
        s, steps = self.settings, self.steps_per_epoch
        first, total = start_epoch * steps, (s.epochs - start_epoch) * steps
        if s.lr_schedule == "step":
            return lambda step: step_decay(max(0, step - first), s.lr_step_epochs * steps, s.lr_gamma, s.lr_peak) / s.lr_peak
        return lambda step: warmup_cosine(max(0, step - first), total, s.warmup_epochs * steps,
                                          s.lr_start, s.lr_peak, s.lr_end) / s.lr_peak

    def stage_index(self, epoch: int) -> int:
        """The stage that trains (0-based) ``epoch``."""
        return max(i for i, start in enumerate(self.starts) if start <= epoch)

    @property
    def stage(self) -> Stage:
        return self.stages[self.stage_index(min(self.epoch, self.settings.epochs - 1))]

    @property
    def last_path(self) -> Path:
        return self.files.last

    @property
    def best_path(self) -> Path:
        return self.files.best

    @property
    def finished(self) -> bool:
        return self.epoch >= self.settings.epochs

    # -- the loop --

    def fit(self, until_epoch: int | None = None) -> Path:
        """Train up to ``until_epoch`` (default: all epochs), one checkpoint per epoch; returns last.pt."""
        until = min(self.settings.epochs, until_epoch or self.settings.epochs)
        if self.rank == 0:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            log.info("%s: %d training pairs, %d steps/epoch, crop %d, batch %d x %d process(es)%s",
                     self.method, len(self.train_set), self.steps_per_epoch, self.crop, self.loader.batch_size,
                     self.world, "".join(f", {k} {v}" for k, v in self.info.items()))
        while self.epoch < until:
            train_means = self._train_epoch()
            self.epoch += 1
            val = self._validate()
            if self.rank == 0:
                self._end_epoch(train_means, val)
            if self.world > 1:
                dist.barrier()
        return self.last_path

    def _train_epoch(self) -> dict[str, float]:
        self.net.train()
        self.objective.train()
        self.loader.sampler.set_epoch(self.epoch)
        self.train_set.set_epoch(self.epoch)
        terms = self.objective.terms
        sums = dict.fromkeys(terms, 0.0)
        stage = f" ({self.stage.name})" if len(self.stages) > 1 else ""
        bar = tqdm(self.loader, desc=f"{self.method} epoch {self.epoch + 1}/{self.settings.epochs}{stage}",
                   disable=self.rank != 0, leave=False, dynamic_ncols=True)
        rows = []
        for ir, vi in bar:
            lr = self.optimizer.param_groups[0]["lr"]
            values = self.train_step(ir.to(self.device, non_blocking=True), vi.to(self.device, non_blocking=True))
            self.step += 1
            scalars = {k: values[k].item() for k in terms}
            for k in terms:
                sums[k] += scalars[k]
            rows.append({"epoch": self.epoch + 1, "step": self.step, "lr": lr, **scalars,
                         **{k: values[k].mean().item() for k in self.objective.diagnostics}})
            bar.set_postfix(loss=f"{scalars['total']:.4f}", lr=f"{lr:.2e}")
        if self.rank == 0:
            self._append_csv(self.files.loss, ("epoch", "step", "lr", *terms, *self.objective.diagnostics), rows)
        return {k: v / max(1, len(rows)) for k, v in sums.items()}

    def train_step(self, ir: torch.Tensor, vi: torch.Tensor) -> dict[str, torch.Tensor]:
        """One optimisation step of the current stage on a batch; returns the loss terms."""
        stage = self.stage
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            terms = self.objective(self.net, ir, vi, stage.name)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(terms["total"]).backward()
        for name, params in self.groups.items():
            if stage.groups is not None and name not in stage.groups:  # not trained in this stage
                for param in params:
                    param.grad = None
        if self.settings.grad_clip:
            self.scaler.unscale_(self.optimizer)
            for params in self.groups.values():
                torch.nn.utils.clip_grad_norm_(params, self.settings.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return terms

    @torch.no_grad()
    def _validate(self) -> dict[str, float] | None:
        """Mean loss terms (of the stage just trained) over centre crops of the VAL split (rank 0 only)."""
        if self.val_loader is None or self.rank != 0:
            return None
        self.model.eval()
        stage = self.stages[self.stage_index(self.epoch - 1)]
        terms = self.objective.terms
        sums, count = dict.fromkeys(terms, 0.0), 0
        with ExitStack() as stack:
            readers = [(r, stack.enter_context(r.recording(self.model))) for r in self.recorders]
            for ir, vi in self.val_loader:
                ir, vi = ir.to(self.device), vi.to(self.device)
                with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                    values = self.objective(self.model, ir, vi, stage.name)
                for k in terms:
                    sums[k] += values[k].item() * len(ir)
                count += len(ir)
            for recorder, rows in readers:
                self._append_csv(self.out_dir / recorder.filename, ("epoch", *recorder.columns),
                                 [{"epoch": self.epoch, **row} for row in rows()])
        return {k: v / count for k, v in sums.items()}

    def _end_epoch(self, train: dict[str, float], val: dict[str, float] | None) -> None:
        if self.epoch - 1 in self.starts[1:]:
            self.best_val = math.inf  # losses of different stages are not comparable
        improved = val is not None and val["total"] < self.best_val
        if improved:
            self.best_val = val["total"]
        if val is not None:
            self._append_csv(self.files.val, ("epoch", *self.objective.terms), [{"epoch": self.epoch, **val}])
        state = self._training_state(val)
        # best.pt before last.pt: a job stopped between the two (a requeue's exit may come anywhere)
        # resumes from the previous last.pt and repeats this epoch, writing the same best.pt again;
        # the other order would resume past an epoch whose best.pt was never written
        if improved or val is None:  # without a VAL split the latest weights are the best we know
            save_checkpoint(self.best_path, self.arch, self.config, self.model, **state)
        save_checkpoint(self.last_path, self.arch, self.config, self.model, **state)
        plot_losses(self.files, self.objective.terms)
        log.info("%s epoch %d/%d: train %s%s%s", self.method, self.epoch, self.settings.epochs,
                 " ".join(f"{k}={v:.4f}" for k, v in train.items()),
                 f"; val total={val['total']:.4f}" if val else "", " (best)" if improved else "")

    # -- checkpoints --

    def _training_state(self, val: dict[str, float] | None) -> dict[str, Any]:
        """Everything besides the weights that an exact resume (and a reader of the run) needs."""
        return {
            "method": self.method, "epoch": self.epoch, "step": self.step,
            "stage": self.stages[self.stage_index(self.epoch - 1)].name,
            "val_loss": val["total"] if val else None, "best_val_loss": self.best_val,
            **self.info, "settings": asdict(self.settings), "loss": config_dict(self.loss_settings),
            "data": {"seed": self.settings.seed, "pairs": self.train_names},
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(), "rng": rng_state(self.device),
            "cpu_threads": torch.get_num_threads(),
        }

    def _resume(self) -> None:
        _, config, arch, state = load_checkpoint(self.last_path)
        if state.get("method") != self.method:
            raise TrainingError(f"{self.last_path}: a checkpoint of {state.get('method')!r}, not {self.method!r}; "
                                "start over to replace it")
        if state.get("data") != {"seed": self.settings.seed, "pairs": self.train_names}:
            raise TrainingError(f"{self.last_path}: the training pairs or seed changed since this checkpoint; "
                                "start over to replace it")
        if arch is not self.arch or config_dict(config) != config_dict(self.config):
            raise TrainingError(f"{self.last_path}: trained with another architecture ({arch.name} "
                                f"{config_dict(config)}); start over to replace it")
        now = {**asdict(self.settings), "loss": config_dict(self.loss_settings)}
        before = {**state.get("settings", {}), "loss": state.get("loss")}
        changed = sorted(k for k in now if before.get(k) != now[k])
        if changed:
            log.warning("resuming with changed settings %s (schedule or data order differ from the first run)",
                        ", ".join(f"{k}: {before.get(k)} -> {now[k]}" for k in changed))
        self.model.load_state_dict(state["state_dict"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler") or not self.scaler.is_enabled():
            self.scaler.load_state_dict(state.get("scaler") or {})
        else:  # saved without fp16 loss scaling: start the scale afresh
            log.info("%s: no loss-scaler state in the checkpoint (trained without fp16); starting a new one", self.method)
        set_rng_state(state["rng"], self.device)
        threads = state.get("cpu_threads")
        if self.device.type == "cpu" and threads not in (None, torch.get_num_threads()):
            log.warning("%s: resuming on %d CPU threads, the checkpoint was written on %d: torch's CPU results depend "
                        "on the thread count, so the weights will not equal an uninterrupted run's bit for bit",
                        self.method, torch.get_num_threads(), threads)
        self.epoch, self.step = state["epoch"], state["step"]
        self.best_val = state["best_val_loss"]
        if self.rank == 0:
            for path in (self.files.loss, self.files.val, *self.recorder_files):  # rows of an interrupted epoch
                self._keep_rows(path, lambda row: int(row["epoch"]) <= self.epoch)
        log.info("%s exists: resuming %s after %d/%d epochs", self.last_path, self.method, self.epoch,
                 self.settings.epochs)

    # -- CSV files --

    def _append_csv(self, path: Path, columns: Sequence[str], rows: list[dict[str, Any]]) -> None:
        new = not path.is_file()
        with path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            if new:
                writer.writeheader()
            writer.writerows(rows)

    def _keep_rows(self, path: Path, keep: Callable[[dict[str, str]], bool]) -> None:
        if not path.is_file():
            return
        text = path.read_text()
        if not text.endswith("\n"):  # a row cut short by the process's end is no row
            text = text[:text.rfind("\n") + 1]
        reader = csv.DictReader(io.StringIO(text, newline=""))
        columns, rows = reader.fieldnames or [], [r for r in reader if keep(r)]
        kept = io.StringIO()
        writer = csv.DictWriter(kept, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(path, kept.getvalue())


def plot_losses(files: FuserFiles, terms: Sequence[str]) -> None:
    """loss_curve.png: per-epoch means of the total and of each term, and the validation total."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    from matplotlib.ticker import MaxNLocator

    train = pd.read_csv(files.loss).groupby("epoch").mean(numeric_only=True)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    axes[0].plot(train.index, train["total"], label="train total")
    if files.val.is_file():
        val = pd.read_csv(files.val)
        axes[0].plot(val["epoch"], val["total"], label="val total")
    for term in terms[1:]:
        axes[1].plot(train.index, train[term], label=term)
    for ax, title in zip(axes, ("total loss", "terms (unweighted)")):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.legend()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(files.loss_curve, buffer.getvalue())
