"""The train-fusion stage: the benchmark's TRAIN split (+ optional extra fusion-only folders) ->
a trained S4Fusion (or ablation) in ``<run>/fusion/<method>/`` (last.pt, best.pt, loss.csv, val.csv,
loss_curve.png). VAL pairs only score the epochs (best.pt); TEST pairs are never read.

A finished training is skipped unless forced; an unfinished one resumes from last.pt. Launched by
torchrun (WORLD_SIZE > 1) it trains with DDP, one process per GPU.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
import torch.distributed as dist

from fusion.s4fusion.config import METHOD_BLOCKS, S4FusionConfig, config_for_method
from fusion.s4fusion.data import (
    TrainPair,
    fit_crop,
    folder_pairs,
    take_fraction,
    training_pairs,
)
from fusion.s4fusion.losses import LossSettings
from fusion.s4fusion.trainer import Trainer, TrainSettings
from pipelines.benchmark import Benchmark, Pair
from pipelines.config import benchmark_dir, stage_dir
from pipelines.devices import apply_scan_backend, torch_device
from pipelines.perception import perception_network
from pipelines.schema import Config

log = logging.getLogger(__name__)

METHOD_LOSS = {"s4fusion_wo_per": {"per": 0.0}}  # same network as s4fusion, trained without L_per


def train_settings(config: Config, method: str) -> TrainSettings:
    """``fusion.train`` (+ the method's own loss changes) as typed settings."""
    section = config.fusion.train.model_dump()
    loss = {**section["loss"], **METHOD_LOSS.get(method, {})}
    if "stages" in loss:
        loss["stages"] = tuple(loss["stages"])
    known = set(TrainSettings.__dataclass_fields__) - {"loss", "seed"}
    return TrainSettings(**{k: v for k, v in section.items() if k in known},
                         seed=config.run.seed, loss=LossSettings(**loss))


def model_config(config: Config, method: str) -> S4FusionConfig:
    """The method's architecture, with ``methods.<method>.topology`` and any ``fusion.train.model`` sizes."""
    if method not in METHOD_BLOCKS:
        raise ValueError(f"train-fusion: {method!r} is not a trainable method; known: {sorted(METHOD_BLOCKS)}")
    topology = config.method_options(method).get("topology", config.method_options("s4fusion").get("topology"))
    return config_for_method(method, topology=topology or "released", **config.fusion.train.model)


def as_train_pairs(pairs: list[Pair]) -> list[TrainPair]:
    return [TrainPair(p.stem, p.ir, p.vi, p.width, p.height) for p in pairs]


def collect_pairs(config: Config) -> tuple[list[TrainPair], list[TrainPair]]:
    """(train, val): TRAIN split + extra folders (fixed-seed fractions), and the VAL split; images
    smaller than the crop padded or skipped per ``fusion.train.small``."""
    bench = Benchmark(benchmark_dir(config))
    extra = []
    for item in config.fusion.train.extra:
        found = folder_pairs(item.path, item.ir, item.vi)
        chosen = take_fraction(found, item.fraction, item.seed)
        log.info("extra training folder %s: %d of %d pairs", item.path, len(chosen), len(found))
        extra += chosen
    held_out = [path for split in ("val", "test") for p in bench.pairs(split) for path in (p.ir, p.vi)]
    train = training_pairs(as_train_pairs(bench.pairs("train")), extra, forbidden=held_out)
    crop, small = config.fusion.train.crop, config.fusion.train.small
    train, _ = fit_crop(train, crop, small)
    val, _ = fit_crop(as_train_pairs(bench.pairs("val")), crop, small)
    return train, val


def setup_device(config: Config) -> torch.device:
    """``run.device`` (auto | cpu | cuda[:n] | 0,1...); under torchrun the process's own GPU, with the
    process group started."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        if dist.get_rank():
            logging.getLogger().setLevel(logging.WARNING)  # one process tells the story
        if torch.cuda.is_available():
            torch.cuda.set_device(local)
            return torch.device("cuda", local)
        return torch.device("cpu")
    return torch_device(config)


def train_fusion(config: Config, method: str = "s4fusion", resume: bool = True, force: bool = False) -> Path:
    """Train ``method`` into ``stage_dir(config, "fusion", method)``; returns the folder. An existing
    last.pt is continued (or, when finished, left alone) unless ``force`` or not ``resume``: then the
    folder's outputs are replaced by a fresh run."""
    out_dir = stage_dir(config, "fusion", method)
    settings, architecture = train_settings(config, method), model_config(config, method)
    device = setup_device(config)
    apply_scan_backend(config, device)
    network, source = perception_network(config)
    log.info("perception network: %s (%s)", source.kind, source.detail)
    train, val = collect_pairs(config)
    trainer = Trainer(architecture, (network, source), train, val, out_dir, settings, method, device,
                      resume=resume and not force)
    if trainer.finished:
        log.info("%s: already trained for %d epochs (%s); use --force to retrain", method, trainer.epoch, out_dir)
    else:
        trainer.fit()
        log.info("%s: trained %d epochs -> %s", method, trainer.epoch, out_dir)
    return out_dir
