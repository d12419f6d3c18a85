"""Seconds per image of every fusion metric of each convention, against the baseline, and of the
decision-layer entropy on M3FD-sized images.

Pairs are real MSRS pairs from ../shared/data/msrs_det20 resized to 1024x768 (the M3FD size); the
"fused" image is their average. Metric times are CPU (process) and wall seconds of ``evaluate`` for
one metric (images already in memory), best of --repeats, OpenCV limited to one thread so the number
is per core. The baseline is the single-module implementation of the 11 metrics before conventions
(``fusion/metrics.py`` at git revision --baseline, loaded from git history), timed in the same run.
The entropy time is one ResNet50 forward pass per image at full resolution (randomly initialised
weights: the time does not depend on them) on --device.

    python bench/bench_metrics.py                       # CPU, 2 pairs, 2 repeats
    python bench/bench_metrics.py --device cuda --batch 8

Estimate of `pipelines metrics` for M methods and N test images: M * N * (all metrics + entropy).
Writes bench/results/bench_metrics.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
import types
from pathlib import Path

import cv2
import numpy as np
import torch

from fusion.metrics import CONVENTIONS, evaluate, read_image
from fusion.perception import build_resnet50, decision_entropy

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "data" / "msrs_det20"
SIZE = (1024, 768)
BASELINE_REVISION = "23f17b2"  # main before fusion/metrics became a package of conventions


def load_triples(count: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(fused, IR, VI) RGB arrays in [0, 255] at 1024x768, the fused one the rounded average."""
    stems = sorted(p.stem for p in (SOURCE / "ir").glob("*.png"))[:count]
    if not stems:
        raise SystemExit(f"{SOURCE / 'ir'}: no PNG images")
    triples = []
    for stem in stems:
        ir, vi = (cv2.resize(read_image(SOURCE / kind / f"{stem}.png", CONVENTIONS["cddfuse"]), SIZE).astype(float)
                  for kind in ("ir", "vi"))
        triples.append((np.round((ir + vi) / 2), ir, vi))
    return triples


def _best(call, repeats: int, count: int) -> dict[str, float]:
    best_cpu = best_wall = float("inf")
    for _ in range(repeats):
        cpu, wall = time.process_time(), time.perf_counter()
        call()
        best_cpu = min(best_cpu, (time.process_time() - cpu) / count)
        best_wall = min(best_wall, (time.perf_counter() - wall) / count)
    return {"cpu_s": best_cpu, "wall_s": best_wall}


def time_convention(triples, convention: str, repeats: int) -> dict[str, dict[str, float]]:
    """Per metric of ``convention``, seconds per triple (grey conversion included)."""
    def run(name: str) -> None:
        for f, ir, vi in triples:
            evaluate(f, ir, vi, convention, metrics=[name])

    times = {name: _best(lambda n=name: run(n), repeats, len(triples)) for name in CONVENTIONS[convention].metrics}
    times["all"] = _best(lambda: [evaluate(f, ir, vi, convention) for f, ir, vi in triples], repeats, len(triples))
    return times


def load_baseline(revision: str) -> types.ModuleType | None:
    """The pre-convention ``fusion/metrics.py`` from git history, or None outside a git checkout."""
    try:
        source = subprocess.run(["git", "-C", str(ROOT), "show", f"{revision}:fusion/metrics.py"],
                                capture_output=True, text=True, check=True).stdout
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None
    module = types.ModuleType("baseline_metrics")
    exec(compile(source, f"{revision}:fusion/metrics.py", "exec"), module.__dict__)
    return module


def time_baseline(module: types.ModuleType, triples, repeats: int) -> dict[str, float]:
    greys = [tuple(module.to_grey255(x / 255.0) for x in triple) for triple in triples]
    return _best(lambda: [module.evaluate(*g) for g in greys], repeats, len(triples))


@torch.inference_mode()
def time_entropy(triples, device: str, batch: int, repeats: int) -> dict[str, float]:
    model, _ = build_resnet50(allow_random=True)
    model.to(device)
    images = torch.from_numpy(np.stack([f.mean(axis=2) / 255.0 for f, _, _ in triples]).astype(np.float32))[:, None]
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
    parser.add_argument("--baseline", default=BASELINE_REVISION, help="git revision of the baseline")
    parser.add_argument("--conventions", nargs="+", default=list(CONVENTIONS), choices=list(CONVENTIONS))
    args = parser.parse_args()
    cv2.setNumThreads(1)

    triples = load_triples(args.pairs)
    times = {name: time_convention(triples, name, args.repeats) for name in args.conventions}
    baseline_module = load_baseline(args.baseline)
    baseline = time_baseline(baseline_module, triples, args.repeats) if baseline_module else None
    entropy = time_entropy(triples, args.device, args.batch, args.repeats)
    totals = {name: metric["all"] for name, metric in times.items()}

    print(f"{'metric':8} " + " ".join(f"{name + ' cpu s':>14}" for name in times)
          + f"   ({SIZE[0]}x{SIZE[1]}, {len(triples)} pairs, per image)")
    for metric in dict.fromkeys(m for t in times.values() for m in t if m != "all"):
        cells = [f"{times[n][metric]['cpu_s']:14.4f}" if metric in times[n] else f"{'-':>14}" for n in times]
        print(f"{metric:8} " + " ".join(cells))
    print(f"{'all':8} " + " ".join(f"{totals[n]['cpu_s']:14.4f}" for n in times)
          + "   (one evaluate call; target <= 1.5 s)")
    if baseline:
        print(f"baseline {args.baseline} (11 metrics, one module): {baseline['cpu_s']:.4f} cpu s/img, "
              f"{baseline['wall_s']:.4f} wall s/img")
    for name in times:
        print(f"M3FD test set (840 images), {name}: ~{840 * totals[name]['wall_s'] / 60:.1f} min per method")
    print(f"entropy  {entropy['wall_s_per_image']:.4f} s/img wall on {args.device} (batch {entropy['batch']})")

    out = ROOT / "bench" / "results" / "bench_metrics.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "size": SIZE, "pairs": len(triples), "conventions": times, "totals": totals,
        "baseline": {"revision": args.baseline, **baseline} if baseline else None,
        "entropy": entropy, "torch": torch.__version__, "platform": platform.platform(),
        "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None,
    }, indent=1))
    print(f"written {out}")


if __name__ == "__main__":
    main()
