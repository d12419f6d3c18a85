"""Images per second of every classical fuser on M3FD-sized (1024x768) pairs, one process, one thread.

Pairs are real MSRS pairs from ../shared/data/msrs_det20 resized to 1024x768. The time is the fuser
call only (luminance rule + recolouring; no file reading or PNG encoding), best of --repeats passes
over --pairs pairs, OpenCV and BLAS limited to one thread so the number is per worker process
(``pipelines fuse`` runs fusion.workers such processes). Both wall-clock and CPU (process) time are
reported: on a loaded machine the CPU figure is the one that carries over.

    python bench/bench_fusers.py                  # all classical fusers, 4 pairs, 3 repeats
    python bench/bench_fusers.py --methods gff tif --pairs 8

Writes bench/results/bench_fusers.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")  # before numpy is imported: one thread per process

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from fusion.registry import build_fuser  # noqa: E402
from fusionbench.images import read_ir, read_vi  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "data" / "msrs_det20"
CLASSICAL = ("ir", "vi", "average", "max", "pca", "laplacian", "dwt", "gff", "tif")
SIZE = (1024, 768)


def load_pairs(source: Path, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    stems = sorted(p.stem for p in (source / "ir").glob("*.png"))[:count]
    if not stems:
        raise SystemExit(f"{source / 'ir'}: no PNG images")
    return [(cv2.resize(read_ir(source / "ir" / f"{s}.png"), SIZE, interpolation=cv2.INTER_CUBIC).clip(0, 1),
             cv2.resize(read_vi(source / "vi" / f"{s}.png"), SIZE, interpolation=cv2.INTER_CUBIC).clip(0, 1))
            for s in stems]


def images_per_second(method: str, pairs: list[tuple[np.ndarray, np.ndarray]], repeats: int) -> dict[str, float]:
    """Best-of-``repeats`` throughput by wall clock and by this process's CPU time."""
    fuser = build_fuser(method)
    fuser(*pairs[0])  # warm-up (imports, allocations)
    wall = cpu = float("inf")
    for _ in range(repeats):
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        for ir, vi in pairs:
            fuser(ir, vi)
        wall = min(wall, time.perf_counter() - start_wall)
        cpu = min(cpu, time.process_time() - start_cpu)
    return {"wall": len(pairs) / wall, "cpu": len(pairs) / cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=SOURCE)
    parser.add_argument("--methods", nargs="+", default=list(CLASSICAL))
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "bench_fusers.json")
    args = parser.parse_args()

    cv2.setNumThreads(1)
    pairs = load_pairs(args.source, args.pairs)
    rates = {method: images_per_second(method, pairs, args.repeats) for method in args.methods}
    print(f"{'method':<10} {'images/s':>9} {'ms/image':>9} {'cpu img/s':>10}   ({SIZE[0]}x{SIZE[1]}, 1 thread, "
          f"load {os.getloadavg()[0]:.1f})")
    for method, rate in rates.items():
        print(f"{method:<10} {rate['wall']:9.1f} {1000 / rate['wall']:9.1f} {rate['cpu']:10.1f}")
    result = {"size": list(SIZE), "pairs": len(pairs), "repeats": args.repeats, "threads": 1,
              "load_average": os.getloadavg()[0], "cpus": os.cpu_count(),
              "machine": platform.processor() or platform.machine(), "python": platform.python_version(),
              "images_per_second": {m: round(r["wall"], 2) for m, r in rates.items()},
              "images_per_cpu_second": {m: round(r["cpu"], 2) for m, r in rates.items()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
