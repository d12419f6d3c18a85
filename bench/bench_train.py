"""Time one training step (forward, the architecture's full loss, backward, optimizer) of learned methods,
per training stage, at their architecture's default crop (or --crop), for a few batch sizes.

    python bench/bench_train.py [--method s4fusion ...] [--batch 2 20] [--steps 2] [--device cpu]
                                [--model '{"dims": [8, 16, 32]}']

Prints a table and writes bench/results/bench_train.json (or --out): one row per (method, stage, batch) with the
architecture, crop and seconds per step, which bench/protocol_time.py uses to price each learned method
by its own architecture and stages. A perception network, where the loss needs one, is randomly
initialised (its cost does not depend on the weights).
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fusion.learned.architecture import config_dict, learned_method
from fusion.learned.data import folder_pairs
from fusion.learned.trainer import Trainer, TrainSettings
from fusion.perception import build_resnet50
from fusionbench.images import write_image

RESULTS = Path(__file__).resolve().parent / "results" / "bench_train.json"


def time_steps(trainer: Trainer, batch: int, steps: int, warmup: int) -> tuple[float, float]:
    """Mean (wall, process CPU) seconds of ``steps`` training steps on random in-memory batches."""
    crop, device = trainer.crop, trainer.device
    ir, vi = torch.rand(2, batch, 1, crop, crop, generator=torch.Generator().manual_seed(0)).to(device)
    timings = []
    for step in range(steps + warmup):
        if device.type == "cuda":
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter(), time.process_time()
        trainer.train_step(ir, vi)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step >= warmup:
            timings.append((time.perf_counter() - wall, time.process_time() - cpu))
    return float(np.mean([t[0] for t in timings])), float(np.mean([t[1] for t in timings]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", nargs="+", default=["s4fusion"], help="learned methods to time")
    parser.add_argument("--batch", type=int, nargs="+", default=[2, 20])
    parser.add_argument("--crop", type=int, default=None, help="training crop (default: each architecture's)")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per row (after one warm-up step per method)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", default=None, help="bf16 | fp16 | none (default: automatic for the device)")
    parser.add_argument("--model", default="{}", help="JSON architecture overrides (default: the method's sizes)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON file to write")
    args = parser.parse_args()

    device = torch.device(args.device)
    perception = None
    rows, configs = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.method:
            entry = learned_method(method)
            arch = entry.architecture
            config = entry.make_config(**json.loads(args.model))
            configs[method] = {"arch": arch.name, "model": config_dict(config)}
            crop = args.crop or arch.default_crop
            for name in ("a", "b"):  # the trainer needs pairs on disk; the timed steps use in-memory batches
                write_image(Path(tmp) / method / "ir" / f"{name}.png", np.zeros((crop, crop), np.uint8))
                write_image(Path(tmp) / method / "vi" / f"{name}.png", np.zeros((crop, crop, 3), np.uint8))
            if arch.needs_perception and perception is None:
                perception = build_resnet50(allow_random=True)[0]
            for batch in args.batch:
                settings = TrainSettings(**{**entry.train, "batch_size": batch, "crop": crop, "workers": 0, "amp": args.amp,
                                            "epochs": max(2, len(arch.stages))})
                trainer = Trainer(arch, config, entry.make_loss(), folder_pairs(Path(tmp) / method), [],
                                  Path(tmp) / method / "out", settings, method=method,
                                  perception=perception if arch.needs_perception else None, device=device, resume=False)
                for index, stage in enumerate(arch.stages):
                    trainer.epoch = trainer.starts[index]  # the step of this stage (no epoch is run)
                    first = not any(r["method"] == method for r in rows)
                    wall_s, cpu_s = time_steps(trainer, batch, args.steps, warmup=1 if first else 0)
                    rows.append({"method": method, "arch": arch.name, "stage": stage.name, "batch": batch, "crop": crop,
                                 "wall_s_per_step": wall_s, "cpu_s_per_step": cpu_s, "images_per_s": batch / wall_s})
                    print(f"{method:<16} {stage.name:<8} batch {batch:3d}  crop {crop}  {wall_s:8.2f} s/step (wall)  "
                          f"{cpu_s:8.2f} s/step (process CPU)  {batch / wall_s:6.2f} images/s", flush=True)
    result = {"device": str(device), "threads": torch.get_num_threads(),
              "machine": platform.processor() or platform.machine(), "steps": args.steps, "methods": configs,
              "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
