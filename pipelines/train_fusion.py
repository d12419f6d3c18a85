"""The train-fusion stage: the benchmark's TRAIN split (+ optional extra fusion-only folders) -> a trained
learned fuser in ``<run>/fusion/<method>/`` (last.pt, best.pt, loss.csv, val.csv, loss_curve.png and the
architecture's recorder files). VAL pairs only score the epochs (best.pt); TEST pairs are never read.

Any registered learned method trains here (:mod:`fusion.learned`): its architecture, loss and training
arguments are the method's registry entry, overridden by ``methods.<method>.model`` / ``.loss`` / ``.train``;
training settings default to the shared ``fusion.train``. A finished training is skipped unless forced; an
unfinished one resumes from last.pt. Launched by torchrun (WORLD_SIZE > 1) it trains with DDP, one process
per GPU.
"""
from __future__ import annotations

import atexit
import logging
import os
from pathlib import Path

import torch
import torch.distributed as dist

from fusion.learned.architecture import LearnedMethod, build_options, learned_method
from fusion.learned.checkpoint import read_payload
from fusion.learned.data import TrainPair, fit_crop, folder_pairs, take_fraction, training_pairs
from fusion.learned.trainer import Trainer, TrainSettings
from fusionbench.benchmark import Benchmark, Pair
from fusionbench.errors import FusionBenchError
from pipelines.config import run_layout
from pipelines.devices import apply_scan_backend, torch_device
from pipelines.perception import perception_network
from pipelines.schema import Config

log = logging.getLogger(__name__)

DATA_KEYS = ("small", "extra")  # fusion.train keys the stage uses itself (which pairs), not the trainer


def train_settings(config: Config, method: LearnedMethod) -> TrainSettings:
    """The method's training settings, later sources winning: the schema's ``fusion.train`` defaults, the
    method's own recipe (its registry entry, e.g. SMFNet's optimizer and schedule), the ``fusion.train``
    values the config sets explicitly (shared by every learned method), ``methods.<method>.train``."""
    shared = config.fusion.train.model_dump(exclude=set(DATA_KEYS))
    chosen = {k: shared[k] for k in config.fusion.train.model_fields_set if k in shared}
    own = config.method_options(method.name).get("train") or {}
    return build_options(TrainSettings, {**shared, **method.train, **chosen, **own, "seed": config.run.seed},
                         f"methods.{method.name}.train")


def as_train_pairs(pairs: list[Pair]) -> list[TrainPair]:
    return [TrainPair(p.stem, p.ir, p.vi, p.width, p.height) for p in pairs]


def collect_pairs(config: Config, crop: int) -> tuple[list[TrainPair], list[TrainPair]]:
    """(train, val): TRAIN split + extra folders (fixed-seed fractions), and the VAL split; images
    smaller than the crop padded or skipped per ``fusion.train.small``."""
    bench = Benchmark(run_layout(config).benchmark)
    extra = []
    for item in config.fusion.train.extra:
        found = folder_pairs(item.path, item.ir, item.vi)
        chosen = take_fraction(found, item.fraction, item.seed)
        log.info("extra training folder %s: %d of %d pairs", item.path, len(chosen), len(found))
        extra += chosen
    held_out = [path for split in ("val", "test") for p in bench.pairs(split) for path in (p.ir, p.vi)]
    train = training_pairs(as_train_pairs(bench.pairs("train")), extra, forbidden=held_out)
    small = config.fusion.train.small
    train, _ = fit_crop(train, crop, small)
    val, _ = fit_crop(as_train_pairs(bench.pairs("val")), crop, small)
    return train, val


def training_device(config: Config) -> torch.device:
    """``run.device`` (auto | cpu | cuda[:n] | 0,1...); under torchrun (WORLD_SIZE > 1) the process's own GPU,
    selected before the process group starts (NCCL binds each process to the current device). The group
    is started once per process, kept for later trainings (run-all trains several methods; re-creating
    a group on torchrun's store can hang) and destroyed when the process exits."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return torch_device(config)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local) if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        atexit.register(dist.destroy_process_group)
    if dist.get_rank():
        logging.getLogger().setLevel(logging.WARNING)  # one process tells the story
    return device


def is_trained(config: Config, method: str) -> bool:
    """True when ``method``'s last.pt has all the epochs the config asks for (what :func:`train_fusion`
    skips; a submitter does not submit it then)."""
    last = run_layout(config).fusion(method).last
    if not last.is_file():
        return False
    try:
        epoch = read_payload(last).get("epoch", 0)
    except FusionBenchError:
        return False
    return int(epoch) >= train_settings(config, learned_method(method)).epochs


def train_fusion(config: Config, method: str = "s4fusion", resume: bool = True, force: bool = False) -> Path:
    """Train ``method`` into its layout folder (``<run>/fusion/<method>``); returns the folder. An existing
    last.pt is continued (or, when finished, left alone) unless ``force`` or not ``resume``: then the
    folder's outputs are replaced by a fresh run."""
    entry = learned_method(method)
    arch = entry.architecture
    options = config.method_options(method)
    model_config = entry.make_config(**(options.get("model") or {}))
    loss = entry.make_loss(**(options.get("loss") or {}))
    settings = train_settings(config, entry)
    out_dir = run_layout(config).fusion(method).folder
    perception, info = None, {}
    if arch.needs_perception:
        perception, source = perception_network(config)
        info["perception"] = {"kind": source.kind, "detail": source.detail}
        log.info("perception network: %s (%s)", source.kind, source.detail)
    train, val = collect_pairs(config, settings.crop or arch.default_crop)
    device = training_device(config)
    apply_scan_backend(config, device)
    trainer = Trainer(arch, model_config, loss, train, val, out_dir, settings, method=method,
                      perception=perception, info=info, device=device, resume=resume and not force)
    if trainer.finished:
        log.info("%s: already trained for %d epochs (%s); use --force to retrain", method, trainer.epoch, out_dir)
    else:
        trainer.fit()
        log.info("%s: trained %d epochs -> %s", method, trainer.epoch, out_dir)
    return out_dir
