"""Time one S4Fusion training step (forward, full loss with the ResNet50 perception network,
backward, AdamW) at the paper's 229x229 crop, for a few batch sizes.

    python bench/bench_train.py [--batch 2 20] [--steps 2] [--device cpu] [--model '{"dims": [8, 16, 32]}']

Prints a table and writes bench/results/bench_train.json. The perception network is randomly
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

from fusion.perception import build_resnet50
from fusion.s4fusion.data import folder_pairs
from fusion.s4fusion.model import config_for_method
from fusion.s4fusion.trainer import Trainer, TrainSettings
from fusionbench.images import write_image

RESULTS = Path(__file__).resolve().parent / "results" / "bench_train.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[2, 20])
    parser.add_argument("--crop", type=int, default=229)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per batch size (after one warm-up step at the first batch size)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", default=None, help="bf16 | fp16 | none (default: bf16 on CUDA, none on CPU)")
    parser.add_argument("--method", default="s4fusion")
    parser.add_argument("--model", default="{}", help="JSON S4FusionConfig overrides (default: the paper's sizes)")
    args = parser.parse_args()

    device = torch.device(args.device)
    perception = build_resnet50(allow_random=True)
    config = config_for_method(args.method, **json.loads(args.model))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("a", "b"):  # the trainer needs pairs on disk; steps below use in-memory batches
            write_image(Path(tmp) / "ir" / f"{name}.png", np.zeros((args.crop, args.crop), np.uint8))
            write_image(Path(tmp) / "vi" / f"{name}.png", np.zeros((args.crop, args.crop, 3), np.uint8))
        for batch in args.batch:
            settings = TrainSettings(batch_size=batch, crop=args.crop, workers=0, amp=args.amp)
            trainer = Trainer(config, perception, folder_pairs(tmp), [], Path(tmp) / "out", settings,
                              args.method, device, resume=False)
            ir, vi = torch.rand(2, batch, 1, args.crop, args.crop, generator=torch.Generator().manual_seed(0), device="cpu").to(device)
            timings = []
            warmup = 0 if rows else 1  # the first step of the process compiles kernels and fills caches
            for step in range(args.steps + warmup):
                if device.type == "cuda":
                    torch.cuda.synchronize()
                wall, cpu = time.perf_counter(), time.process_time()
                trainer.train_step(ir, vi)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                if step >= warmup:
                    timings.append((time.perf_counter() - wall, time.process_time() - cpu))
            wall_s = float(np.mean([t[0] for t in timings]))
            cpu_s = float(np.mean([t[1] for t in timings]))
            rows.append({"batch": batch, "crop": args.crop, "wall_s_per_step": wall_s, "cpu_s_per_step": cpu_s,
                         "images_per_s": batch / wall_s})
            print(f"batch {batch:3d}  crop {args.crop}  {wall_s:8.2f} s/step (wall)  {cpu_s:8.2f} s/step (process CPU)  "
                  f"{batch / wall_s:6.2f} images/s", flush=True)
    result = {"device": str(device), "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
              "method": args.method, "model": config.to_dict(), "steps": args.steps, "rows": rows}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
