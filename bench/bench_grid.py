"""Cost of running the benchmark as a SLURM job graph (run.executor=slurm), on the SLURM this machine submits to
(scripts/slurm_local.sh up).

Cases:
- ``paper grid``: the whole ``pipelines run-all -c paper --detach -s run.executor=slurm`` command for the paper
  config with both tasks (10 methods, 3 seeds, YOLOv5s and SegFormer-B0), its jobs submitted held
  (``executor.sbatch={hold: true}``) and cancelled afterwards: the wall time from typing the command to a
  queued grid (target 10 s), and the part of it spent planning and submitting (the command's own log). The
  data is a small synthetic sample prepared beforehand, so the command's prepare step only checks it.
  ``--against DIR`` runs the same command from another checkout too (e.g. main, exported with
  ``git archive``), in the same session.
- ``tiny``: a tiny sample (16 pairs at 128x96: average, max and a small S4Fusion trained 2 epochs, 2 detector
  seeds of 1 epoch at 64 px) run by run-all inline, then on SLURM: wall time of each and their ratio (target
  at most 2). Each run gets a fresh folder and runs alone.

The load average of the machine is recorded with the numbers: other work on it moves them.

    python bench/bench_grid.py                 # both
    python bench/bench_grid.py --only paper --against /tmp/main

Writes bench/results/bench_grid.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = ["sample.pairs=16", "sample.width=128", "sample.height=96", "fusion.methods=[average,max,s4fusion]",
        "fusion.workers=1", "fusion.train.epochs=2", "fusion.train.crop=49", "fusion.train.batch_size=2",
        "detect.epochs=1", "detect.imgsz=64", "detect.batch=4", "detect.seeds=[0,1]", "metrics.workers=1",
        "report.qualitative=2", "tasks.segmentation=[]"]
KINDS = ("train", "fuse", "downstream", "metrics", "compare")
LOCAL = [*(f"executor.{what}.{kind}={value}" for what, value in (("cpus", 1), ("mem_gb", 0), ("time", 10))
           for kind in KINDS), "executor.poll_s=1"]
PAPER = ["tasks={detection: [yolov5s], segmentation: [segformer_b0]}", "run.executor=slurm",
         "executor.sbatch={hold: true}", *(f"executor.mem_gb.{kind}=0" for kind in KINDS)]


def pipelines(checkout: Path, *args: str) -> subprocess.CompletedProcess:
    """``pipelines <args>`` run from ``checkout``; a failure ends the bench with its output."""
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", *args], env={**os.environ, "PYTHONPATH": str(checkout)},
                          capture_output=True, text=True, cwd=checkout)
    if done.returncode:
        raise SystemExit(f"pipelines {' '.join(args[:2])} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def sets(items: list[str]) -> list[str]:
    return sum((["-s", item] for item in items), [])


def paper_grid(checkout: Path, folder: Path) -> dict:
    """``run-all --detach`` of the paper grid from ``checkout`` (its jobs held, then cancelled)."""
    from pipelines.sample import make_sample

    raw = make_sample(folder / "raw", pairs=20, width=128, height=96, seed=0)
    args = ["-c", "paper", *sets([f"data.raw={raw}", f"run.root={folder / 'run'}", *PAPER])]
    pipelines(checkout, "prepare", *args)
    start = time.perf_counter()
    out = pipelines(checkout, "run-all", "--detach", "--no-progress", *args)
    seconds = time.perf_counter() - start
    pipelines(checkout, "cancel", *args)
    found = re.search(r"grid: (\d+) task\(s\) submitted, \d+ already done \(([\d.]+) s\)", out.stderr + out.stdout)
    if not found:
        raise SystemExit(f"run-all --detach did not say what it submitted:\n{out.stderr[-3000:]}")
    (record,) = (folder / "run").rglob("grid.json")
    ids = {task["id"].split("_")[0] for task in json.loads(record.read_text())["tasks"] if task["id"]}
    return {"command_s": seconds, "plan_and_submit_s": float(found.group(2)), "tasks": int(found.group(1)),
            "sbatch_calls": len(ids)}


def run_all(folder: Path, *extra: str) -> float:
    start = time.perf_counter()
    pipelines(ROOT, "run-all", "--no-progress", *sets([f"run.root={folder}", f"report.dir={folder / 'report'}", *TINY, *extra]))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("paper", "tiny"))
    parser.add_argument("--against", type=Path, help="another checkout whose run-all --detach is timed too")
    args = parser.parse_args()
    results: dict = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                     "load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "paper"):
            checkouts = {"this": ROOT, **({"against": args.against.resolve()} if args.against else {})}
            results["paper_grid"] = {name: {"checkout": str(path), **paper_grid(path, Path(tmp) / f"paper-{name}")}
                                     for name, path in checkouts.items()}
        if args.only in (None, "tiny"):
            inline = run_all(Path(tmp) / "inline", "run.executor=inline")
            on_slurm = run_all(Path(tmp) / "slurm", "run.executor=slurm", *LOCAL)
            results["tiny"] = {"inline_s": inline, "slurm_s": on_slurm, "ratio": on_slurm / inline}
    results["load_after"] = os.getloadavg()
    print(f"{'case':<44}{'value':>10}")
    for name, grid in results.get("paper_grid", {}).items():
        print(f"{f'paper grid ({name}): run-all --detach s':<44}{grid['command_s']:>10.1f}")
        print(f"{f'paper grid ({name}): of which plan + submit s':<44}{grid['plan_and_submit_s']:>10.1f}")
        print(f"{f'paper grid ({name}): tasks (sbatch calls)':<44}{grid['tasks']:>6} ({grid['sbatch_calls']})")
    if "tiny" in results:
        tiny = results["tiny"]
        print(f"{'tiny inline s':<44}{tiny['inline_s']:>10.1f}\n{'tiny slurm s':<44}{tiny['slurm_s']:>10.1f}\n"
              f"{'tiny slurm / inline':<44}{tiny['ratio']:>10.2f}")
    print(f"load average before {results['load_before'][0]:.1f}, after {results['load_after'][0]:.1f} "
          f"({results['cpus']} CPUs)")
    out = ROOT / "bench" / "results" / "bench_grid.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
