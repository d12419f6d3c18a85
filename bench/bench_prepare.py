"""Time of the synthetic sample generator and of ``prepare`` (which decodes every image once).

Cases: generating the default 60-pair sample (256x192); preparing it; preparing the 20 real MSRS
pairs (640x480, ../shared/data/msrs_det20); preparing --m3fd-pairs M3FD-sized pairs (1024x768,
MSRS pairs resized, PNG) to estimate a full M3FD (4,200 pairs). Each case runs in a fresh
temporary folder; wall-clock and CPU (process) time are both reported: on a loaded machine the
CPU figure is the one that carries over (prepare reads images in threads, so CPU may exceed wall).

    python bench/bench_prepare.py
    python bench/bench_prepare.py --m3fd-pairs 100

Writes bench/results/bench_prepare.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import cv2

from pipelines.prepare import prepare_benchmark
from pipelines.sample import make_sample

ROOT = Path(__file__).resolve().parents[1]
MSRS = ROOT.parent / "shared" / "data" / "msrs_det20"
M3FD_SIZE, M3FD_PAIRS = (1024, 768), 4200


def timed(action) -> dict[str, float]:
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    action()
    return {"wall_s": time.perf_counter() - start_wall, "cpu_s": time.process_time() - start_cpu}


def m3fd_sized(out: Path, pairs: int) -> Path:
    """A generic-layout folder of ``pairs`` 1024x768 pairs made from the MSRS pairs."""
    stems = sorted(p.stem for p in (MSRS / "ir").glob("*.png"))
    for folder in ("ir", "vi", "labels"):
        (out / folder).mkdir(parents=True)
    (out / "labels" / "classes.txt").write_text((MSRS / "labels" / "classes.txt").read_text())
    for i in range(pairs):
        stem = stems[i % len(stems)]
        for folder in ("ir", "vi"):
            image = cv2.imread(str(MSRS / folder / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
            cv2.imwrite(str(out / folder / f"{i:05d}.png"), cv2.resize(image, M3FD_SIZE))
        (out / "labels" / f"{i:05d}.txt").write_text((MSRS / "labels" / "fusion" / f"{stem}.txt").read_text())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--m3fd-pairs", type=int, default=40)
    args = parser.parse_args()
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rows["sample: generate 60 pairs 256x192"] = timed(lambda: make_sample(tmp / "sample", 60, 256, 192, 0))
        rows["prepare: sample, 60 pairs 256x192"] = timed(lambda: prepare_benchmark(tmp / "sample", tmp / "b1"))
        if MSRS.is_dir():
            rows["prepare: MSRS, 20 pairs 640x480"] = timed(lambda: prepare_benchmark(MSRS, tmp / "b2"))
            raw = m3fd_sized(tmp / "m3fd", args.m3fd_pairs)
            case = f"prepare: {args.m3fd_pairs} pairs 1024x768"
            rows[case] = timed(lambda: prepare_benchmark(raw, tmp / "b3"))
            per_pair = rows[case]["wall_s"] / args.m3fd_pairs
            rows[case]["full_m3fd_estimate_s"] = per_pair * M3FD_PAIRS
    print(f"{'case':<38} {'wall s':>8} {'cpu s':>8}")
    for name, row in rows.items():
        extra = f"  (~{row['full_m3fd_estimate_s']:.0f} s for {M3FD_PAIRS} pairs)" if "full_m3fd_estimate_s" in row else ""
        print(f"{name:<38} {row['wall_s']:>8.2f} {row['cpu_s']:>8.2f}{extra}")
    out = ROOT / "bench" / "results" / "bench_prepare.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": platform.platform(), "processor": platform.processor(),
                               "cases": rows}, indent=1) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
