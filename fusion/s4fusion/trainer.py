"""Training S4Fusion (and its ablations): AdamW, warm-up + cosine learning rate, a checkpoint every
epoch, exact resume.

Exactness: the data order and every crop/flip depend only on (seed, epoch) (see :mod:`data`), and
``last.pt`` holds the model, optimizer, scheduler, grad-scaler and RNG states at an epoch boundary, so
on a CPU ``N`` epochs straight and ``N/2`` + resume + ``N/2`` give identical weights.

Outputs in ``out_dir``: last.pt, best.pt (lowest validation loss), loss.csv (every step), val.csv
(every epoch), delta.csv (mean Delta per scan layer and modality on VAL, paper Table VIII),
loss_curve.png. Under torchrun (DDP) only rank 0 writes.
"""
from __future__ import annotations

import csv
import io
import logging
import math
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from fusion.perception import PerceptionSource
from fusion.s4fusion.checkpoint import load_checkpoint, save_checkpoint
from fusion.s4fusion.data import CropPairs, TrainPair, make_loader
from fusion.s4fusion.interpret import mean_delta_rows, recording_delta
from fusion.s4fusion.losses import FusionLoss, LossSettings
from fusion.s4fusion.model import S4Fusion, S4FusionConfig
from fusionbench.files import atomic_write_bytes, atomic_write_text

log = logging.getLogger(__name__)

TERMS = ("total", "per", "l1", "ssim", "grad")
LOSS_COLUMNS = ("epoch", "step", "lr", *TERMS, "w_ir", "w_vi")
VAL_COLUMNS = ("epoch", *TERMS)
OUTPUTS = ("last.pt", "best.pt", "loss.csv", "val.csv", "delta.csv", "loss_curve.png")
DELTA_COLUMNS = ("epoch", "layer", "stream", "mean_delta")
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class TrainSettings:
    """Hyper-parameters (paper Sec. IV-A1 defaults); built from the config's ``fusion.train`` section."""

    epochs: int = 800
    batch_size: int = 20
    crop: int = 229
    workers: int = 8
    lr_start: float = 3e-4
    lr_peak: float = 1.5e-3
    lr_end: float = 6e-4
    warmup_epochs: int = 10
    weight_decay: float = 0.01
    grad_clip: float | None = None
    amp: str | None = None  # None: bf16 on CUDA, off on CPU; "bf16" | "fp16" | "none"
    seed: int = 0
    loss: LossSettings = field(default_factory=LossSettings)

    def amp_dtype(self, device: torch.device) -> torch.dtype | None:
        choice = self.amp if self.amp is not None else ("bf16" if device.type == "cuda" else "none")
        if choice not in (*AMP_DTYPES, "none"):
            raise ValueError(f"amp: expected bf16, fp16, none or null, got {choice!r}")
        return AMP_DTYPES.get(choice)


def warmup_cosine(step: int, total: int, warmup: int, start: float, peak: float, end: float) -> float:
    """Learning rate at ``step``: linear ``start -> peak`` over ``warmup`` steps, then a half cosine
    ``peak -> end`` reaching ``end`` at step ``total``."""
    if step < warmup:
        return start + (peak - start) * step / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return end + (peak - end) * 0.5 * (1.0 + math.cos(math.pi * progress))


def rng_state() -> dict[str, Any]:
    """Global RNG states in plain types (checkpoints are read with ``weights_only``)."""
    kind, key, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "numpy": [kind, key.tolist(), pos, has_gauss, gauss],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    kind, key, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.array(key, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Trainer:
    """One training run of one method into ``out_dir``; resumes from ``out_dir/last.pt`` when asked."""

    def __init__(self, model_config: S4FusionConfig, perception: tuple[torch.nn.Module, PerceptionSource],
                 train_pairs: Sequence[TrainPair], val_pairs: Sequence[TrainPair], out_dir: str | Path,
                 settings: TrainSettings, method: str = "s4fusion", device: str | torch.device = "cpu",
                 resume: bool = True):
        self.settings, self.method, self.out_dir = settings, method, Path(out_dir)
        self.device = torch.device(device)
        self.rank, self.world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        if not train_pairs:
            raise ValueError("no training pairs (empty TRAIN split and no extra folders)")
        network, self.perception = perception
        self.loss = FusionLoss(network, settings.loss).to(self.device)
        torch.manual_seed(settings.seed)  # the same initial weights for the same seed
        self.model = S4Fusion(model_config).to(self.device)
        if not self.model.valid_size(settings.crop):
            raise ValueError(f"training crop {settings.crop} is not a valid S4Fusion size; the nearest valid "
                             f"one above is {self.model.next_valid_size(settings.crop)}")
        if settings.batch_size % self.world:
            raise ValueError(f"batch size {settings.batch_size} (the global batch) does not split "
                             f"over {self.world} processes")
        batch = settings.batch_size // self.world
        self.train_names = [p.name for p in train_pairs]
        self.train_set = CropPairs(train_pairs, settings.crop, settings.seed, augment=True)
        self.loader = make_loader(self.train_set, batch, settings.workers, settings.seed, rank=self.rank,
                                  world=self.world)
        self.val_loader = make_loader(CropPairs(val_pairs, settings.crop, augment=False), batch,
                                      settings.workers, settings.seed, shuffle=False) if val_pairs else None
        self.steps_per_epoch = len(self.loader)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=settings.lr_peak,
                                           weight_decay=settings.weight_decay)
        total = settings.epochs * self.steps_per_epoch
        warmup = settings.warmup_epochs * self.steps_per_epoch
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: warmup_cosine(
            step, total, warmup, settings.lr_start, settings.lr_peak, settings.lr_end) / settings.lr_peak)
        self.amp_dtype = settings.amp_dtype(self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.net = self.model
        if self.world > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True)  # the released topology never uses its finest-scale fusion layer
        self.epoch, self.step, self.best_val = 0, 0, math.inf
        if resume and self.last_path.is_file():
            self._resume()
        elif self.rank == 0:  # a fresh start: nothing of an earlier run may mix into the new outputs
            for name in OUTPUTS:
                (self.out_dir / name).unlink(missing_ok=True)

    @property
    def last_path(self) -> Path:
        return self.out_dir / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.out_dir / "best.pt"

    @property
    def finished(self) -> bool:
        return self.epoch >= self.settings.epochs

    def fit(self, until_epoch: int | None = None) -> Path:
        """Train up to ``until_epoch`` (default: all epochs), one checkpoint per epoch; returns last.pt."""
        until = min(self.settings.epochs, until_epoch or self.settings.epochs)
        if self.rank == 0:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            log.info("%s: %d training pairs, %d steps/epoch, crop %d, batch %d x %d process(es), perception %s (%s)",
                     self.method, len(self.train_set), self.steps_per_epoch, self.settings.crop,
                     self.loader.batch_size, self.world, self.perception.kind, self.perception.detail)
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
        self.loss.train()
        self.loader.sampler.set_epoch(self.epoch)
        self.train_set.set_epoch(self.epoch)
        sums = dict.fromkeys(TERMS, 0.0)
        bar = tqdm(self.loader, desc=f"{self.method} epoch {self.epoch + 1}/{self.settings.epochs}",
                   disable=self.rank != 0, leave=False, dynamic_ncols=True)
        rows = []
        for ir, vi in bar:
            lr = self.optimizer.param_groups[0]["lr"]
            terms = self.train_step(ir.to(self.device, non_blocking=True), vi.to(self.device, non_blocking=True))
            self.step += 1
            values = {k: terms[k].item() for k in TERMS}
            for k in TERMS:
                sums[k] += values[k]
            rows.append({"epoch": self.epoch + 1, "step": self.step, "lr": lr, **values,
                         "w_ir": terms["w_ir"].mean().item(), "w_vi": terms["w_vi"].mean().item()})
            bar.set_postfix(loss=f"{values['total']:.4f}", lr=f"{lr:.2e}")
        if self.rank == 0:
            self._append_csv("loss.csv", LOSS_COLUMNS, rows)
        return {k: v / max(1, len(rows)) for k, v in sums.items()}

    def train_step(self, ir: torch.Tensor, vi: torch.Tensor) -> dict[str, torch.Tensor]:
        """One optimisation step on a batch; returns the loss terms."""
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            terms = self.loss(self.net(ir, vi), ir, vi)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(terms["total"]).backward()
        if self.settings.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return terms

    @torch.no_grad()
    def _validate(self) -> dict[str, float] | None:
        """Mean loss terms over centre crops of the VAL split (rank 0 only)."""
        if self.val_loader is None or self.rank != 0:
            return None
        self.model.eval()
        sums, count = dict.fromkeys(TERMS, 0.0), 0
        with recording_delta(self.model) as deltas:
            for ir, vi in self.val_loader:
                ir, vi = ir.to(self.device), vi.to(self.device)
                with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                    terms = self.loss(self.model(ir, vi), ir, vi)
                for k in TERMS:
                    sums[k] += terms[k].item() * len(ir)
                count += len(ir)
        self._append_csv("delta.csv", DELTA_COLUMNS, [{"epoch": self.epoch, **row} for row in mean_delta_rows(deltas)])
        return {k: v / count for k, v in sums.items()}

    def _end_epoch(self, train: dict[str, float], val: dict[str, float] | None) -> None:
        improved = val is not None and val["total"] < self.best_val
        if improved:
            self.best_val = val["total"]
        if val is not None:
            self._append_csv("val.csv", VAL_COLUMNS, [{"epoch": self.epoch, **val}])
        save_checkpoint(self.last_path, self.model, **self._training_state(val))
        if improved or val is None:  # without a VAL split the latest weights are the best we know
            save_checkpoint(self.best_path, self.model, **self._training_state(val))
        plot_losses(self.out_dir)
        log.info("%s epoch %d/%d: train %s%s%s", self.method, self.epoch, self.settings.epochs,
                 " ".join(f"{k}={v:.4f}" for k, v in train.items()),
                 f"; val total={val['total']:.4f}" if val else "", " (best)" if improved else "")

    def _training_state(self, val: dict[str, float] | None) -> dict[str, Any]:
        """Everything besides the weights that an exact resume (and a reader of the run) needs."""
        settings = asdict(self.settings)
        return {
            "method": self.method, "epoch": self.epoch, "step": self.step,
            "val_loss": val["total"] if val else None, "best_val_loss": self.best_val,
            "perception": {"kind": self.perception.kind, "detail": self.perception.detail},
            "settings": settings, "data": {"seed": self.settings.seed, "pairs": self.train_names},
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(), "rng": rng_state(),
        }

    def _resume(self) -> None:
        state = load_checkpoint(self.last_path)[1]
        if state.get("method") != self.method:
            raise ValueError(f"{self.last_path}: a checkpoint of {state.get('method')!r}, not {self.method!r}; "
                             "start a fresh training to replace it")
        if state["data"] != {"seed": self.settings.seed, "pairs": self.train_names}:
            raise ValueError(f"{self.last_path}: the training pairs or seed changed since this checkpoint; "
                             "start a fresh training to replace it")
        if state["config"] != self.model.config.to_dict():
            raise ValueError(f"{self.last_path}: trained with another architecture ({state['config']}); "
                             "start a fresh training to replace it")
        now = asdict(self.settings)
        changed = sorted(k for k in now if state["settings"].get(k) != now[k])
        if changed:
            log.warning("resuming with changed settings %s (schedule or data order differ from the first run)",
                        ", ".join(f"{k}: {state['settings'].get(k)} -> {now[k]}" for k in changed))
        self.model.load_state_dict(state["state_dict"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        self.epoch, self.step = state["epoch"], state["step"]
        self.best_val = state["best_val_loss"]
        if self.rank == 0:
            for name in ("loss.csv", "val.csv", "delta.csv"):  # drop rows of an epoch that was interrupted
                self._keep_rows(name, lambda row: int(row["epoch"]) <= self.epoch)
        log.info("%s exists: resuming %s after %d/%d epochs (a fresh training replaces it)",
                 self.last_path, self.method, self.epoch, self.settings.epochs)

    def _append_csv(self, name: str, columns: Sequence[str], rows: list[dict[str, Any]]) -> None:
        path = self.out_dir / name
        new = not path.is_file()
        with path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            if new:
                writer.writeheader()
            writer.writerows(rows)

    def _keep_rows(self, name: str, keep) -> None:
        path = self.out_dir / name
        if not path.is_file():
            return
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            columns, rows = reader.fieldnames or [], [r for r in reader if keep(r)]
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(path, text.getvalue())


def plot_losses(out_dir: Path) -> None:
    """loss_curve.png: per-epoch means of each weighted term and of the validation total."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    from matplotlib.ticker import MaxNLocator

    train = pd.read_csv(out_dir / "loss.csv").groupby("epoch").mean(numeric_only=True)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    axes[0].plot(train.index, train["total"], label="train total")
    if (out_dir / "val.csv").is_file():
        val = pd.read_csv(out_dir / "val.csv")
        axes[0].plot(val["epoch"], val["total"], label="val total")
    for term in TERMS[1:]:
        axes[1].plot(train.index, train[term], label=term)
    for ax, title in zip(axes, ("total loss", "terms (unweighted)")):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.legend()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(out_dir / "loss_curve.png", buffer.getvalue())
