"""`run-all` with run.executor=local: the job graph in local worker processes, two tasks at a time.

The scheduler is checked on toy jobs in threads (order, failures, skipped work); the executor on a tiny
sample beside the same config run inline on as many CPU threads as each worker gets (torch's CPU results
depend on the thread count): the same fused images, detector and segmenter results and comparisons. A
run-all killed while it trains leaves no worker behind, and its rerun finishes.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from pipelines.config import load_config, run_layout
from pipelines.executors.local import run_jobs, worker_threads
from pipelines.executors.state import DONE, FAILED, SKIPPED
from pipelines.grid import Job, Resources, Step, Task

REPO = Path(__file__).resolve().parents[1]
NO_RESOURCES = Resources(gpus=0, cpus=1, mem_gb=0, minutes=1)
TINY_S4FUSION = "{model: {dims: [8, 16, 32], d_state: 4, d_state_fusion: 4, fusion_depth: 1}, loss: {per: 0}}"

pytestmark = pytest.mark.timeout(900)


# --- the scheduler, on toy jobs ----------------------------------------------------------------

class Calls:
    """What the toy steps did, in order, with a lock (they run in threads)."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.lock = threading.Lock()

    def add(self, event: str) -> None:
        with self.lock:
            self.events.append(event)


def toy_job(calls: Calls, key: str, after: tuple[str, ...] = (), fails: bool = False, done: bool = False,
            kind: str = "downstream") -> Job:
    def work(config):
        calls.add(f"start {key}")
        time.sleep(0.05)
        calls.add(f"end {key}")
        if fails:
            raise ValueError(f"{key} broke")

    task = Task(key, (Step(f"work {key}", work),), done=Step("done", lambda config: done))
    return Job(key, kind, (task,), after, NO_RESOURCES)


def test_a_job_starts_after_what_it_waits_for_has_ended_however_it_ended():
    calls = Calls()
    jobs = [toy_job(calls, "train"), toy_job(calls, "fuse", after=("train",), fails=True),
            toy_job(calls, "other"), toy_job(calls, "detect", after=("fuse", "other")),
            toy_job(calls, "current", done=True), toy_job(calls, "compare", after=("detect", "current"))]
    records = []
    with ThreadPoolExecutor(2) as pool:
        run_jobs(None, jobs, pool, 2, records, "log")
    events = calls.events
    for job in jobs:
        for before in job.after:
            if before != "current":
                assert events.index(f"end {before}") < events.index(f"start {job.key}"), events
    assert "start current" not in events  # its work is current: skipped, and what waits for it still runs
    states = {r.key: r.state for r in records}
    assert states == {"train": DONE, "fuse": FAILED, "other": DONE, "detect": DONE, "current": SKIPPED, "compare": DONE}
    assert "fuse broke" in next(r.detail for r in records if r.key == "fuse")
    assert events.index("start other") < events.index("end train")  # two workers: independent jobs overlap


def test_a_free_worker_takes_the_most_urgent_ready_task():
    """A training unblocks the fusion and every downstream job of its method: it goes first; a fused set then
    goes before the detectors that were ready earlier."""
    calls = Calls()
    jobs = [toy_job(calls, "detect/a"), toy_job(calls, "detect/b"), toy_job(calls, "train", kind="train"),
            toy_job(calls, "fuse", after=("train",), kind="fuse")]
    with ThreadPoolExecutor(1) as pool:
        run_jobs(None, jobs, pool, 1, [], "log")
    assert [e for e in calls.events if e.startswith("start")] == ["start train", "start fuse", "start detect/a",
                                                                  "start detect/b"]


def test_a_grid_whose_job_waits_for_a_missing_job_is_a_bug_said_at_once():
    calls = Calls()
    with ThreadPoolExecutor(1) as pool, pytest.raises(RuntimeError, match="not in the grid: \\['orphan'\\]"):
        run_jobs(None, [toy_job(calls, "orphan", after=("nowhere",))], pool, 1, [], "log")


# --- the executor, on a tiny sample --------------------------------------------------------------

def overrides(root: Path, name: str, *extra: str) -> list[str]:
    return [f"run.root={root / name}", f"report.dir={root / name / 'report'}", "run.name=tiny",
            "sample.pairs=16", "sample.width=128", "sample.height=96", "fusion.methods=[average,gff,s4fusion]",
            "fusion.workers=1", "fusion.train.epochs=2", "fusion.train.crop=49", "fusion.train.warmup_epochs=1",
            f"methods.s4fusion={TINY_S4FUSION}", "detect.epochs=2", "detect.imgsz=64", "segment.epochs=2",
            "segment.imgsz=64", "metrics.workers=1", "report.qualitative=2", "executor.local_workers=2", *extra]


def pipelines(*args: str, threads: int | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), NUMBA_NUM_THREADS=str(threads))
    return subprocess.Popen([sys.executable, "-m", "pipelines.cli", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def run_all(root: Path, name: str, *extra: str, threads: int | None = None) -> tuple[int, str]:
    process = pipelines("run-all", "--no-progress", *sum((["-s", o] for o in overrides(root, name, *extra)), []),
                        threads=threads)
    output = process.communicate(timeout=600)[0]
    return process.returncode, output


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("local")
    threads = worker_threads(load_config("sample", overrides(root, "local")))
    local = run_all(root, "local", "run.executor=local")
    rerun = run_all(root, "local", "run.executor=local")
    inline = run_all(root, "inline", "run.executor=inline", threads=threads)
    return {"root": root, "local": local, "rerun": rerun, "inline": inline, "threads": threads}


def layouts(root: Path) -> tuple:
    return (run_layout(load_config("sample", overrides(root, "inline"))),
            run_layout(load_config("sample", overrides(root, "local"))))


def test_the_local_grid_runs_two_tasks_at_once(runs):
    code, output = runs["local"]
    assert code == 0, output
    assert f"local grid: 2 worker process(es) of {runs['threads']} CPU thread(s) each" in output
    assert "run tiny: all steps succeeded" in output
    assert "s of steps side by side); logs:" in output  # the wall time, not the sum of the steps'
    lines = output.splitlines()
    first_end = next(i for i, line in enumerate(lines) if line.endswith(": done"))
    started = [line for line in lines[:first_end] if line.startswith("INFO train/s4fusion: train-fusion")
               or line.startswith("INFO fuse/average: fuse")]
    assert len(started) == 2, lines[:first_end]  # the training and a classical fusion side by side


def test_the_local_grid_gives_the_inline_results(runs):
    assert runs["inline"][0] == 0, runs["inline"][1]
    inline, local = layouts(runs["root"])
    for method in ("average", "gff", "s4fusion"):
        images = [json.loads((layout.benchmark / "fused" / method / "manifest.json").read_text())["images"]
                  for layout in (inline, local)]
        assert {k: v["sha256"] for k, v in images[0].items()} == {k: v["sha256"] for k, v in images[1].items()}
        for task, model, keys in (("detection", "yolov5n", ("map50", "map50_ci95", "map50_95", "per_class")),
                                  ("segmentation", "segformer_b0", ("miou", "miou_ci95", "pixel_accuracy"))):
            results = [json.loads((layout.task(task).model(model).method(method).seed(0).folder / "results.json")
                                  .read_text()) for layout in (inline, local)]
            assert {k: results[0][k] for k in keys} == {k: results[1][k] for k in keys}, (task, method)
    for csv in sorted((inline.root / "compare").glob("*.csv")):
        assert csv.read_text() == (local.root / "compare" / csv.name).read_text(), csv.name


def test_a_rerun_of_the_local_grid_runs_only_the_closing_job(runs):
    code, output = runs["rerun"]
    assert code == 0, output
    assert "local grid: 1 task(s) ran" in output  # compare and report, which skip what is current themselves
    assert "train-fusion" not in output and "fuse average" not in output


def started_training(root: Path, name: str) -> tuple[subprocess.Popen, list[psutil.Process]]:
    """A local run-all whose S4Fusion training has started (long enough not to end first), and its workers."""
    args = sum((["-s", o] for o in overrides(root, name, "run.executor=local", "fusion.train.epochs=40")), [])
    parent = pipelines("run-all", "--no-progress", *args)
    log = run_layout(load_config("sample", overrides(root, name))).log("run-all")
    deadline = time.monotonic() + 300
    while "train/s4fusion: train-fusion s4fusion" not in (log.read_text() if log.is_file() else ""):
        assert parent.poll() is None and time.monotonic() < deadline, parent.communicate()[0]
        time.sleep(0.5)
    workers = [p for p in psutil.Process(parent.pid).children() if "spawn_main" in " ".join(p.cmdline())]
    assert len(workers) == 2, [p.cmdline() for p in workers]
    return parent, workers


def test_a_killed_local_run_all_leaves_no_worker_and_its_rerun_finishes(runs):
    parent, workers = started_training(runs["root"], "killed")
    parent.send_signal(signal.SIGKILL)
    parent.communicate()
    gone, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive, [p.cmdline() for p in alive]
    code, output = run_all(runs["root"], "killed", "run.executor=local", "fusion.train.epochs=3")
    assert code == 0, output
    assert "run tiny: all steps succeeded" in output


def test_a_terminated_local_run_all_stops_its_workers_and_says_how_to_resume(runs):
    parent, workers = started_training(runs["root"], "terminated")
    parent.send_signal(signal.SIGTERM)
    output = parent.communicate(timeout=120)[0]
    assert parent.returncode == 143, output
    gone, alive = psutil.wait_procs(workers, timeout=5)  # stopped by run-all itself, before it exited
    assert not alive, [p.cmdline() for p in alive]
    assert "rerun" in output.lower(), output[-2000:]
