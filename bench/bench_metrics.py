"""Seconds per image of every fusion metric and of the decision-layer entropy on M3FD-sized images.

Pairs are real MSRS pairs from ../shared/data/msrs_det20 resized to 1024x768 (the M3FD size); the
"fused" image is their average. Metric times are CPU (process) and wall seconds of the metric call
only (images already in memory), best of --repeats, OpenCV limited to one thread so the number is per
core. The entropy time is one ResNet50 forward pass per image at full resolution (randomly
initialised weights: the time does not depend on them) on --device.

    python bench/bench_metrics.py                       # CPU, 2 pairs, 2 repeats
    python bench/bench_metrics.py --device cuda --batch 8

Estimate of `pipelines metrics` for M methods and N test images: M * N * (all metrics + entropy).
Writes bench/results/bench_metrics.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from fusion import metrics as M
from fusion.perception import build_resnet50, decision_entropy

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "data" / "msrs_det20"
SIZE = (1024, 768)
FUNCTIONS = {"EN": M.en, "SD": M.sd, "SF": M.sf, "AG": M.ag, "MI": M.mi, "SCD": M.scd, "VIF": M.vif,
             "Qabf": M.qabf, "SSIM": M.ssim, "PSNR": M.psnr, "CC": M.cc}


def load_triples(count: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    stems = sorted(p.stem for p in (SOURCE / "ir").glob("*.png"))[:count]
    if not stems:
        raise SystemExit(f"{SOURCE / 'ir'}: no PNG images")
    triples = []
    for stem in stems:
        ir, vi = (np.round(cv2.resize(M.load_grey255(SOURCE / kind / f"{stem}.png"), SIZE)) for kind in ("ir", "vi"))
        triples.append((np.round((ir + vi) / 2), ir, vi))
    return triples


def time_metrics(triples, repeats: int) -> dict[str, dict[str, float]]:
    results = {}
    for name, fn in FUNCTIONS.items():
        best_cpu = best_wall = float("inf")
        for _ in range(repeats):
            cpu, wall = time.process_time(), time.perf_counter()
            for f, ir, vi in triples:
                fn(f) if name in ("EN", "SD", "SF", "AG") else fn(f, ir, vi)
            best_cpu = min(best_cpu, (time.process_time() - cpu) / len(triples))
            best_wall = min(best_wall, (time.perf_counter() - wall) / len(triples))
        results[name] = {"cpu_s": best_cpu, "wall_s": best_wall}
    return results


@torch.inference_mode()
def time_entropy(triples, device: str, batch: int, repeats: int) -> dict[str, float]:
    model, _ = build_resnet50(allow_random=True)
    model.to(device)
    images = torch.from_numpy(np.stack([f / 255.0 for f, _, _ in triples]).astype(np.float32))[:, None]
    images = images.repeat(max(1, -(-batch // len(triples))), 1, 1, 1)[:batch].to(device)
    decision_entropy(model, images)  # warm-up (cuDNN autotuning, allocations)
    best = float("inf")
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        decision_entropy(model, images)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - start) / len(images))
    return {"wall_s_per_image": best, "batch": len(images), "device": device}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args()
    cv2.setNumThreads(1)

    triples = load_triples(args.pairs)
    metric_times = time_metrics(triples, args.repeats)
    entropy = time_entropy(triples, args.device, args.batch, args.repeats)
    total_cpu = sum(v["cpu_s"] for v in metric_times.values())

    print(f"{'metric':8} {'cpu s/img':>10} {'wall s/img':>11}   ({SIZE[0]}x{SIZE[1]}, {len(triples)} pairs)")
    for name, value in metric_times.items():
        print(f"{name:8} {value['cpu_s']:10.4f} {value['wall_s']:11.4f}")
    print(f"{'all':8} {total_cpu:10.4f} {sum(v['wall_s'] for v in metric_times.values()):11.4f}")
    print(f"entropy  {entropy['wall_s_per_image']:.4f} s/img wall on {args.device} (batch {entropy['batch']})")

    out = ROOT / "bench" / "results" / "bench_metrics.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "size": SIZE, "pairs": len(triples), "metrics": metric_times, "all_metrics_cpu_s": total_cpu,
        "entropy": entropy, "torch": torch.__version__, "platform": platform.platform(),
        "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None,
    }, indent=1))
    print(f"written {out}")


if __name__ == "__main__":
    main()
