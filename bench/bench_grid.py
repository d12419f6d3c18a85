"""Cost of running the benchmark as a SLURM job graph (run.executor=slurm), on the SLURM this machine submits to
(scripts/slurm_local.sh up).

Cases:
- ``paper grid``: plan the paper config's grid (10 methods, 3 seeds) and submit all of it held (``--hold``),
  then scancel it: the time from a config to a queued grid, imports of the stage modules apart (target 10 s).
- ``tiny``: a tiny sample (16 pairs at 128x96: average, max and a small S4Fusion trained 2 epochs, 2 detector
  seeds of 1 epoch at 64 px) run by run-all inline, then on SLURM: wall time of each and their ratio (target
  at most 2). Each run gets a fresh folder and runs alone.

The load average of the machine is recorded with the numbers: other work on it moves them.

    python bench/bench_grid.py                 # both
    python bench/bench_grid.py --only paper

Writes bench/results/bench_grid.json.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = ["sample.pairs=16", "sample.width=128", "sample.height=96", "fusion.methods=[average,max,s4fusion]",
        "fusion.workers=1", "fusion.train.epochs=2", "fusion.train.crop=49", "fusion.train.batch_size=2",
        "detect.epochs=1", "detect.imgsz=64", "detect.batch=4", "detect.seeds=[0,1]", "metrics.workers=1",
        "report.qualitative=2", "tasks.segmentation=[]"]
LOCAL = [*(f"executor.{what}.{kind}={value}" for what, value in (("cpus", 1), ("mem_gb", 0), ("time", 10))
           for kind in ("train", "fuse", "downstream", "metrics", "compare")), "executor.poll_s=1"]


def paper_grid(folder: Path) -> dict:
    """Plan and submit the paper grid held; every job is cancelled afterwards."""
    start = time.perf_counter()
    from pipelines.config import load_config
    from pipelines.executors import slurm
    from pipelines.grid import plan

    for stage in ("downstream", "fuse", "metrics", "train_fusion"):  # what plan() imports, timed apart
        importlib.import_module(f"pipelines.{stage}")
    imported = time.perf_counter()
    config = load_config("paper", [f"run.root={folder}", "run.executor=slurm", "executor.mem_gb.train=0",
                                   "tasks={detection: [yolov5s], segmentation: [segformer_b0]}",
                                   "executor.mem_gb.fuse=0", "executor.mem_gb.downstream=0", "executor.mem_gb.metrics=0",
                                   "executor.mem_gb.compare=0"])
    jobs = plan(config)
    planned = time.perf_counter()
    records = slurm.submit(config, jobs, hold=True)
    submitted = time.perf_counter()
    ids = sorted({r.id.split("_")[0] for r in records if r.id})
    subprocess.run(["scancel", *ids], check=True)
    return {"imports_s": imported - start, "plan_s": planned - imported, "submit_s": submitted - planned,
            "plan_and_submit_s": submitted - imported, "jobs": len(jobs), "sbatch_calls": len(ids),
            "tasks": len(records), "jobs_per_kind": dict(Counter(j.kind for j in jobs)),
            "tasks_per_kind": dict(Counter(j.kind for j in jobs for _ in j.tasks))}


def run_all(folder: Path, *extra: str) -> float:
    sets = sum((["-s", item] for item in [f"run.root={folder}", f"report.dir={folder / 'report'}", *TINY, *extra]), [])
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", "run-all", "--no-progress", *sets],
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"run-all {' '.join(extra)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("paper", "tiny"))
    args = parser.parse_args()
    results: dict = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                     "load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "paper"):
            results["paper_grid"] = paper_grid(Path(tmp) / "paper")
        if args.only in (None, "tiny"):
            inline = run_all(Path(tmp) / "inline")
            on_slurm = run_all(Path(tmp) / "slurm", "run.executor=slurm", *LOCAL)
            results["tiny"] = {"inline_s": inline, "slurm_s": on_slurm, "ratio": on_slurm / inline}
    results["load_after"] = os.getloadavg()
    print(f"{'case':<34}{'value':>10}")
    if "paper_grid" in results:
        grid = results["paper_grid"]
        for key in ("imports_s", "plan_s", "submit_s", "plan_and_submit_s"):
            print(f"{'paper grid ' + key:<34}{grid[key]:>10.2f}")
        print(f"{'paper grid jobs (tasks)':<34}{grid['jobs']:>6} ({grid['tasks']})")
        print("paper grid per kind: " + ", ".join(f"{k} {n} job(s), {grid['tasks_per_kind'][k]} task(s)"
                                                  for k, n in grid["jobs_per_kind"].items()))
    if "tiny" in results:
        tiny = results["tiny"]
        print(f"{'tiny inline s':<34}{tiny['inline_s']:>10.1f}\n{'tiny slurm s':<34}{tiny['slurm_s']:>10.1f}\n"
              f"{'tiny slurm / inline':<34}{tiny['ratio']:>10.2f}")
    print(f"load average before {results['load_before'][0]:.1f}, after {results['load_after'][0]:.1f} "
          f"({results['cpus']} CPUs)")
    out = ROOT / "bench" / "results" / "bench_grid.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
