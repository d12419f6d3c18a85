"""OpenMP waiting on the CPU: passive, libgomp's default spin and this project's short spin, same run.

torch (its bundled libgomp) and numba's selective scan (the system's libgomp) each keep an OpenMP thread
pool, and an idle pool spins for GOMP_SPINCOUNT turns (libgomp: ~100,000 per millisecond; 300,000 unless
set, 0 under OMP_WAIT_POLICY=PASSIVE) before it sleeps. libgomp reads this once, when it loads, so every
setting runs in fresh processes; the settings alternate --repeats times and the fastest run counts (a
slow spell of a shared machine then hits them alike). Workloads:

* ``yolov5n``: training steps of YOLOv5n (ultralytics' model and loss) at 128 px, batch 4, on random
  images and boxes: the sample's detector, torch's many small operations;
* ``s4fusion_train``: training steps of the sample's small S4Fusion (crop 49, batch 2, its full loss with
  a random ResNet50) through bench/bench_train.py: torch and numba's scan taking turns;
* ``s4fusion_fuse``: the released S4Fusion fusing one 480x640 pair (bench/bench_model.py's child):
  mostly the scan.

    python bench/bench_omp_wait.py [--repeats 2] [--steps 10]

Prints seconds per step (per fusion) and writes bench/results/omp_wait.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
OUT = BENCH / "results" / "omp_wait.json"
SETTINGS = {  # what each setting adds to an environment without OMP_WAIT_POLICY and GOMP_SPINCOUNT
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "libgomp default (300,000)": {"GOMP_SPINCOUNT": "300000"},
    "this project (100,000)": {"GOMP_SPINCOUNT": "100000"},
}
SAMPLE_S4FUSION = {"topology": "paper", "dims": [48], "depths": [1], "depths_decoder": [1]}  # sample.yaml's


def yolo_steps(steps: int) -> float:
    """Seconds per YOLOv5n training step (forward, loss, backward, AdamW) at 128 px, batch 4; runs in a child."""
    import numpy as np

    from fusionbench.ultralytics_offline import use_offline_ultralytics

    with tempfile.TemporaryDirectory() as config_dir:
        use_offline_ultralytics(config_dir)
        import torch
        from ultralytics.cfg import get_cfg
        from ultralytics.nn.tasks import DetectionModel

        torch.manual_seed(0)
        model = DetectionModel("yolov5n.yaml", nc=6, verbose=False)
        model.args = get_cfg()
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        rng = np.random.default_rng(0)
        boxes = 20
        batch = {"img": torch.rand(4, 3, 128, 128),
                 "batch_idx": torch.from_numpy(rng.integers(0, 4, boxes)).float(),
                 "cls": torch.from_numpy(rng.integers(0, 6, (boxes, 1))).float(),
                 "bboxes": torch.from_numpy(np.concatenate([rng.uniform(0.2, 0.8, (boxes, 2)),
                                                            rng.uniform(0.05, 0.3, (boxes, 2))], 1)).float()}
        times = []
        for step in range(steps + 2):  # two warm-up steps
            start = time.perf_counter()
            loss, _ = model.loss(batch)
            loss.sum().backward()
            optimizer.step()
            optimizer.zero_grad()
            if step >= 2:
                times.append(time.perf_counter() - start)
        return float(np.mean(times))


def run(command: list[str], env: dict[str, str]) -> str:
    result = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
    if result.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def measure(workload: str, env: dict[str, str], steps: int) -> float:
    """Seconds per step (per fusion) of ``workload`` in fresh processes under ``env``."""
    if workload == "yolov5n":
        return float(run([sys.executable, __file__, "--child-yolo", str(steps)], env).strip().splitlines()[-1])
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
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per run")
    parser.add_argument("--child-yolo", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_yolo:
        print(yolo_steps(args.child_yolo))
        return

    base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    workloads = ("yolov5n", "s4fusion_train", "s4fusion_fuse")
    best: dict[str, dict[str, float]] = {name: {} for name in SETTINGS}
    for _ in range(args.repeats):
        for workload in workloads:
            for name, extra in SETTINGS.items():
                seconds = measure(workload, {**base, **extra}, args.steps)
                best[name][workload] = min(seconds, best[name].get(workload, float("inf")))
    passive = best["passive"]
    print(f"{'setting':<28}" + "".join(f"{w:>26}" for w in workloads))
    for name, row in best.items():
        print(f"{name:<28}" + "".join(f"{row[w]:>14.3f} s ({passive[w] / row[w]:4.2f}x)" for w in workloads))
    result = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
              "load_average": os.getloadavg(), "repeats": args.repeats, "steps": args.steps, "settings": SETTINGS,
              "seconds": best, "unit": {"yolov5n": "s per training step", "s4fusion_train": "s per training step",
                                        "s4fusion_fuse": "s per 480x640 fusion"}}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2))
    print(f"(x: speed-up over passive) wrote {OUT}")


if __name__ == "__main__":
    main()
