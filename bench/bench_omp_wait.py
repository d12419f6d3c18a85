"""OpenMP waiting on the CPU: passive, libgomp's default spin and this project's short spin, same run.

torch (its bundled libgomp) and numba's selective scan (the system's libgomp) each keep an OpenMP thread
pool, and an idle pool spins for GOMP_SPINCOUNT turns (libgomp: ~100,000 per millisecond; 300,000 unless
set, 0 under OMP_WAIT_POLICY=PASSIVE) before it sleeps. libgomp reads this once, when it loads, so every
setting runs in fresh processes; the settings alternate --repeats times and the fastest run counts (a
slow spell of a shared machine then hits them alike). Workloads:

* ``yolov5n``: epochs of YOLOv5n trained as the sample trains it (detection.yolo.train: 128 px, batch 4,
  40 random images with random boxes; the first epoch not counted): torch's many small operations;
* ``s4fusion_train``: training steps of the sample's small S4Fusion (crop 49, batch 2, its full loss with
  a random ResNet50) through bench/bench_train.py: torch and numba's scan taking turns;
* ``s4fusion_fuse``: the released S4Fusion fusing one 480x640 pair (bench/bench_model.py's child):
  mostly the scan.

    python bench/bench_omp_wait.py [--repeats 2] [--steps 10] [--epochs 4]

Prints seconds per epoch, step or fusion and writes bench/results/omp_wait.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from fusion import OPENMP_WAITING

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
OUT = BENCH / "results" / "omp_wait.json"
SETTINGS = {  # what each setting adds to an environment without OMP_WAIT_POLICY and GOMP_SPINCOUNT
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "libgomp default (300,000)": {"GOMP_SPINCOUNT": "300000"},
    "this project (100,000)": {"GOMP_SPINCOUNT": "100000"},
}
SAMPLE_S4FUSION = {"topology": "paper", "dims": [48], "depths": [1], "depths_decoder": [1]}  # sample.yaml's


def yolo_epochs(epochs: int) -> float:
    """Seconds per YOLOv5n epoch through detection.yolo.train, as the sample trains it (128 px, batch 4,
    40 training images; the first epoch not counted), on random images and boxes; runs in a child."""
    import numpy as np

    from fusionbench.images import write_image
    from fusionbench.ultralytics_offline import cpu_threads, use_offline_ultralytics

    with tempfile.TemporaryDirectory() as tmp:
        use_offline_ultralytics(Path(tmp) / "config")
        from detection.yolo import TrainSettings, train, write_data_yaml

        rng = np.random.default_rng(0)
        for split, count in (("train", 40), ("val", 6), ("test", 2)):
            (Path(tmp) / "labels" / split).mkdir(parents=True)
            for k in range(count):
                write_image(Path(tmp) / "images" / split / f"{k}.png", rng.integers(0, 256, (96, 128, 3), np.uint8))
                boxes = np.column_stack([rng.integers(0, 6, 4), rng.uniform(0.2, 0.8, (4, 2)), rng.uniform(0.05, 0.3, (4, 2))])
                np.savetxt(Path(tmp) / "labels" / split / f"{k}.txt", boxes, fmt=["%d"] + ["%.4f"] * 4)
        data = write_data_yaml(Path(tmp) / "data.yaml", tmp, [str(c) for c in range(6)])
        settings = TrainSettings(epochs=epochs, imgsz=128, batch=4, workers=0, seed=0, resume=False,
                                 extra={"optimizer": "AdamW", "lr0": 0.003, "warmup_epochs": 1, "mosaic": 0.0, "nbs": 4})
        with cpu_threads():
            train(data, Path(tmp) / "run" / "train", "yolov5n.yaml", settings)
        ends = np.loadtxt(Path(tmp) / "run" / "train" / "results.csv", delimiter=",", skiprows=1, usecols=1)
        return float((ends[-1] - ends[0]) / (epochs - 1))


def run(command: list[str], env: dict[str, str]) -> str:
    result = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
    if result.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def measure(workload: str, env: dict[str, str], steps: int, epochs: int) -> float:
    """Seconds per epoch, step or fusion of ``workload`` in fresh processes under ``env``."""
    if workload == "yolov5n":
        return float(run([sys.executable, __file__, "--child-yolo", str(epochs)], env).strip().splitlines()[-1])
    if workload == "s4fusion_train":
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "train.json"
            run([sys.executable, str(BENCH / "bench_train.py"), "--method", "s4fusion", "--model",
                 json.dumps(SAMPLE_S4FUSION), "--crop", "49", "--batch", "2", "--steps", str(steps),
                 "--device", "cpu", "--out", str(out)], env)
            return json.loads(out.read_text())["rows"][0]["wall_s_per_step"]
    return json.loads(run([sys.executable, str(BENCH / "bench_model.py"), "--threads", "2", "--repeats", "1",
                           "--child", "480,640,0"], env).strip().splitlines()[-1])["wall_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2, help="alternations of the settings; the fastest counts")
    parser.add_argument("--steps", type=int, default=10, help="timed S4Fusion training steps per run")
    parser.add_argument("--epochs", type=int, default=4, help="YOLOv5n epochs per run (the first is not timed)")
    parser.add_argument("--child-yolo", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_yolo:
        print(yolo_epochs(args.child_yolo))
        return

    base = {k: v for k, v in os.environ.items() if k not in OPENMP_WAITING}
    workloads = ("yolov5n", "s4fusion_train", "s4fusion_fuse")
    best: dict[str, dict[str, float]] = {name: {} for name in SETTINGS}
    for _ in range(args.repeats):
        for workload in workloads:
            for name, extra in SETTINGS.items():
                seconds = measure(workload, {**base, **extra}, args.steps, args.epochs)
                best[name][workload] = min(seconds, best[name].get(workload, float("inf")))
    passive = best["passive"]
    print(f"{'setting':<28}" + "".join(f"{w:>26}" for w in workloads))
    for name, row in best.items():
        print(f"{name:<28}" + "".join(f"{row[w]:>14.3f} s ({passive[w] / row[w]:4.2f}x)" for w in workloads))
    result = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
              "load_average": os.getloadavg(), "repeats": args.repeats, "steps": args.steps, "epochs": args.epochs, "settings": SETTINGS,
              "seconds": best, "unit": {"yolov5n": "s per epoch", "s4fusion_train": "s per training step",
                                        "s4fusion_fuse": "s per 480x640 fusion"}}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2))
    print(f"(x: speed-up over passive) wrote {OUT}")


if __name__ == "__main__":
    main()
