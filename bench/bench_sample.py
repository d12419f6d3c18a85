"""Wall time of README command 1's ``pipelines run-all`` on the sample, by executor, in the same session.

Each executor (default: inline, then local) runs the sample config in a fresh folder with a fresh numba
cache (``NUMBA_CACHE_DIR``), so each compiles the scan kernels as a fresh clone does. Recorded per run: wall
and CPU seconds (children included), the load average before it, and the summary's result table, since
torch's CPU results depend on the thread count (inline computes on all cores, a local worker on its share).

    python bench/bench_sample.py                       # inline, then local
    python bench/bench_sample.py --executors local -s executor.local_workers=3

Prints a table and writes bench/results/bench_sample.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "bench_sample.json"


def run_sample(folder: Path, executor: str, overrides: list[str]) -> dict:
    """One ``pipelines run-all`` of the sample with ``run.executor=executor`` under ``folder``."""
    settings = [f"run.root={folder / 'runs'}", f"report.dir={folder / 'report'}", f"run.executor={executor}",
                *overrides]
    env = {**os.environ, "NUMBA_CACHE_DIR": str(folder / "numba"), "PYTHONPATH": str(ROOT)}
    load = os.getloadavg()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", "run-all", "--no-progress",
                           *sum((["-s", s] for s in settings), [])], env=env, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise SystemExit(f"run-all with run.executor={executor} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    lines = done.stdout.splitlines()
    table = lines[next(i for i, line in enumerate(lines) if line.startswith("run sample:")):]
    return {"executor": executor, "wall_s": wall,
            "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "load_average_before": load, "summary": table}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executors", nargs="+", default=["inline", "local"], choices=("inline", "local"))
    parser.add_argument("-s", "--set", dest="overrides", action="append", default=[], help="a config override")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for executor in args.executors:
            runs.append(run_sample(Path(tmp) / executor, executor, args.overrides))
            print(f"{executor:<8} {runs[-1]['wall_s']:8.1f} s wall  {runs[-1]['cpu_s']:8.1f} s CPU  "
                  f"(load before {runs[-1]['load_average_before'][0]:.2f})", flush=True)
    base = runs[0]["wall_s"]
    for run in runs:
        run["speedup_vs_first"] = base / run["wall_s"]
        print(f"\n{run['executor']}: {run['speedup_vs_first']:.2f}x the first run's speed\n" + "\n".join(run["summary"]))
    result = {"machine": platform.processor() or platform.machine(), "cores": os.cpu_count(),
              "overrides": args.overrides, "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
