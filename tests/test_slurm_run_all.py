"""`run-all` with run.executor=slurm against a real SLURM (scripts/slurm_local.sh: one node, four fake GPUs),
beside the same config run inline: the same fused images, weights, detector results and summaries.

The SLURM run is disturbed the ways a cluster disturbs it, and must still equal the inline run: its
learned fuser's training is longer than its two-minute time limit, so SLURM's own timer warns it (USR2,
``executor.signal_delay_s`` before the limit; SLURM looks every 30 s, so up to 30 s earlier): it
checkpoints, requeues itself and resumes from its last epoch, as often as it takes; one detector job is requeued while it runs (``scontrol requeue``: SIGTERM, SIGKILL,
a fresh start); one method cannot be fused at all (its jobs fail, the others finish, compare and report
run, and the summary names the failed jobs and their logs). The grid is submitted with ``--detach`` and a
second run-all, started while it is live, attaches and submits nothing. The learned set is fused in two
shards, a job array its dependents wait for.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from runs import MODEL

from fusion.learned.checkpoint import checkpoint_identity
from pipelines.cli import cli
from pipelines.config import load_config, run_layout
from pipelines.executors.state import LIVE, GridState, squeue

REPO = Path(__file__).resolve().parents[1]
METHODS = ["average", "s4fusion"]  # and "broken", whose fused set cannot be made
SEEDS = [0, 1]
REQUEUED = f"detection/{MODEL}/average/seed0"  # requeued by hand once its detector has started
# The training's time limit and warning: SLURM warns 85-115 s after the start (it looks every 30 s), a job
# requeued at once is warned about 100 s after its restart. With a 1-minute limit a restart would get ~40 s,
# most of it spent importing under load (SLURM tests run beside the inline run: 2 cores, ~5-10 s per epoch).
TRAIN_MINUTES, WARNING_S = 2, 5
# The training must outlast the latest warning (~115 s) on any machine: the fixture times two epochs of it
# first and sets the epochs for ~150 s at that speed (a SLURM job, on one CPU beside the inline run, is slower)
TRAINING_SECONDS, TRAINING = 150, {"epochs": 24}
# epochs of seconds, so that every allocation completes several
TINY_S4FUSION = "{model: {dims: [8, 16, 32], d_state: 4, d_state_fusion: 4, fusion_depth: 1}, loss: {per: 0}}"

pytestmark = pytest.mark.timeout(1500)


def overrides(root: Path, name: str, *extra: str) -> list[str]:
    return [f"run.root={root / name}", f"report.dir={root / name / 'report'}", "run.name=grid",
            "sample.pairs=16", "sample.width=128", "sample.height=96",
            f"fusion.methods=[{','.join([*METHODS, 'broken'])}]", f"methods.broken.from={root / 'no_such_results'}",
            "fusion.workers=1", f"fusion.train.epochs={TRAINING['epochs']}", "fusion.train.crop=49",
            "fusion.train.batch_size=2", "fusion.train.warmup_epochs=1", f"methods.s4fusion={TINY_S4FUSION}",
            "detect.epochs=1", "detect.imgsz=64", "detect.batch=4", f"detect.seeds=[{','.join(map(str, SEEDS))}]",
            "metrics.workers=1", "report.qualitative=2", "tasks.segmentation=[]", "run.executor=inline", *extra]


def on_slurm(root: Path) -> list[str]:
    per_kind = ("train", "fuse", "downstream", "metrics", "compare")
    return overrides(root, "slurm", "run.executor=slurm", "executor.poll_s=1",
                     f"executor.setup=[export PYTHONPATH={REPO}]",
                     *(f"executor.cpus.{k}=1" for k in per_kind), *(f"executor.mem_gb.{k}=0" for k in per_kind),
                     *(f"executor.time.{k}=10" for k in per_kind if k != "train"), f"executor.time.train={TRAIN_MINUTES}",
                     f"executor.signal_delay_s={WARNING_S}", "executor.max_requeues=10", "executor.fuse_shards=2")


def pipelines(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "pipelines.cli", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)


def with_sets(items: list[str]) -> list[str]:
    return sum((["-s", item] for item in items), [])


def requeue_once_running(state_path: Path, key: str, started: Path, stop: threading.Event,
                         done: dict[str, str]) -> None:
    """``scontrol requeue`` the task ``key`` once it runs and has written ``started``."""
    while not stop.is_set() and key not in done:
        state = GridState.load(state_path)
        for task in state.tasks if state else ():
            if task.key == key and task.state == "running" and started.is_file():
                subprocess.run(["scontrol", "requeue", task.id], check=True)
                done[key] = task.id
        time.sleep(0.5)


def epochs_outlasting_the_time_limit(root: Path) -> int:
    """Epochs of the tiny training that take ~TRAINING_SECONDS here: time epochs 2-3 after a first one (imports
    and data loading left out), never fewer than 24."""
    settings = with_sets(overrides(root, "timing"))
    for command in (["prepare"], ["train-fusion", "--epochs", "1"]):
        done = CliRunner().invoke(cli, [*command, *settings])
        assert done.exit_code == 0, done.output
    start = time.perf_counter()
    done = CliRunner().invoke(cli, ["train-fusion", "--epochs", "3", *settings])
    per_epoch = (time.perf_counter() - start) / 2
    assert done.exit_code == 0, done.output
    return max(24, math.ceil(TRAINING_SECONDS / per_epoch))


@pytest.fixture(scope="module")
def runs(slurm, tmp_path_factory):
    root = tmp_path_factory.mktemp("grid")
    TRAINING["epochs"] = epochs_outlasting_the_time_limit(root)
    started = time.perf_counter()
    detached = pipelines("run-all", "--detach", "--no-progress", *with_sets(on_slurm(root)))
    detached_out = detached.communicate(timeout=300)[0]
    assert detached.returncode == 0, detached_out
    layout = run_layout(load_config("sample", on_slurm(root)))
    submitted = {t.key: t.id for t in GridState.load(layout.grid.state).tasks}
    attached = pipelines("run-all", "--no-progress", *with_sets(on_slurm(root)))
    stop, disturbed = threading.Event(), {}
    watcher = threading.Thread(target=requeue_once_running, daemon=True, args=(
        layout.grid.state, REQUEUED, layout.task("detection").model(MODEL).method("average").seed(0).protocol,
        stop, disturbed))
    watcher.start()
    inline_start = time.perf_counter()
    inline = CliRunner().invoke(cli, ["run-all", "--no-progress", *with_sets(overrides(root, "inline"))])
    inline_seconds = time.perf_counter() - inline_start
    attached_out = attached.communicate(timeout=1400)[0]
    stop.set()
    watcher.join()
    return {"root": root, "inline": inline.output, "detached": detached_out, "attached": attached_out,
            "attached_rc": attached.returncode, "submitted": submitted, "disturbed": disturbed,
            "state": GridState.load(layout.grid.state), "seconds": time.perf_counter() - started,
            "inline_seconds": inline_seconds}


def layouts(runs) -> tuple:
    root = runs["root"]
    return (run_layout(load_config("sample", overrides(root, "inline"))),
            run_layout(load_config("sample", on_slurm(root))))


def test_the_slurm_grid_gives_the_inline_results(runs):
    inline, slurm = layouts(runs)
    shards = [t for t in runs["state"].tasks if t.job == "fuse/s4fusion"]  # its set fused in two shards
    assert [(t.key, t.state) for t in shards] == [(f"fuse/s4fusion/shard-{i}-of-2", "done") for i in (1, 2)]
    for method in METHODS:
        sets = [json.loads((layout.benchmark / "fused" / method / "manifest.json").read_text())["images"]
                for layout in (inline, slurm)]
        assert {s: e["sha256"] for s, e in sets[0].items()} == {s: e["sha256"] for s, e in sets[1].items()}, method
        for seed in SEEDS:
            results = [json.loads(layout.task("detection").model(MODEL).method(method).seed(seed).results.read_text())
                       for layout in (inline, slurm)]
            keep = ("map50", "map50_ci95", "map50_95", "per_class", "selected_epoch", "val_map50_per_epoch")
            assert {k: results[0][k] for k in keep} == {k: results[1][k] for k in keep}, (method, seed)
        summaries = [json.loads(layout.task("detection").model(MODEL).method(method).summary.read_text()) for layout in (inline, slurm)]
        assert summaries[0]["statistics"] == summaries[1]["statistics"], method
    for name in ("detection.csv", "detection_intervals.csv", "metrics.csv", "metric_intervals.csv"):
        assert (inline.compare.folder / name).read_text() == (slurm.compare.folder / name).read_text(), name
    assert inline.task("detection").model(MODEL).summary.read_text() == slurm.task("detection").model(MODEL).summary.read_text()
    assert inline.metrics.summary.read_text() == slurm.metrics.summary.read_text()
    assert slurm.pages.index.is_file()


def test_a_training_cut_by_its_time_limit_requeues_itself_and_ends_with_the_same_weights(runs):
    inline, slurm = layouts(runs)
    train = next(t for t in runs["state"].tasks if t.key == "train/s4fusion")
    assert train.state == "done" and train.info["restarts"] >= 1, train
    log = Path(train.log).read_text()
    # every allocation but the last was warned by SLURM's timer and requeued itself (none was killed)
    assert log.count("near the time limit: requeued") == train.info["restarts"], log[-3000:]
    assert "Caught signal SIGUSR2" in log
    assert "resuming s4fusion after" in log
    for name in ("last", "best"):
        paths = [getattr(layout.fusion("s4fusion"), name) for layout in (inline, slurm)]
        assert checkpoint_identity(paths[0]) == checkpoint_identity(paths[1]), name
    assert inline.fusion("s4fusion").loss.read_text() == slurm.fusion("s4fusion").loss.read_text()


def test_a_detector_requeued_while_it_runs_starts_again_and_gives_the_same_results(runs):
    assert REQUEUED in runs["disturbed"], "the detector was never seen running"
    task = next(t for t in runs["state"].tasks if t.key == REQUEUED)
    assert task.state == "done" and task.info["restarts"] == 1, task
    log = Path(task.log).read_text()
    assert log.count(f"{REQUEUED}: detection/{MODEL}/average seed 0") == 2 and "restart 1" in log
    # its results are among those compared with the inline run above


def test_a_failed_method_does_not_stop_the_others_and_the_summary_names_its_jobs_and_logs(runs):
    state, output = runs["state"], runs["attached"]
    failed = {t.key: t for t in state.tasks if t.state == "failed"}
    # its fuse job, and what needs its fused set: metrics (a method asked for must have one) and the detectors
    assert set(failed) == {"fuse/broken", "metrics/broken", *(f"detection/{MODEL}/broken/seed{s}" for s in SEEDS)}, output
    assert all(t.state == "done" for t in state.tasks if t.key not in failed)
    assert runs["attached_rc"] == 1 and "3 step(s) failed" in output  # fuse, metrics and the detector array
    assert "FAILED fuse broken" in output and failed["fuse/broken"].log in output
    assert "FAILED metrics broken" in output and "no fused set 'broken'" in output
    assert f"FAILED detection/{MODEL} broken" in output and failed[f"detection/{MODEL}/broken/seed1"].log in output
    assert "no_such_results" in Path(failed["fuse/broken"].log).read_text()


def test_no_job_is_left_in_the_queue(runs):
    ids = [t.id for t in runs["state"].tasks if t.id]
    assert ids and not [i for i, (s, _) in squeue(ids).items() if s in LIVE]


def test_jobs_running_at_once_got_distinct_gpus(runs):
    on_gpu = [t for t in runs["state"].tasks if t.kind in ("train", "downstream") or t.job == "fuse/s4fusion"]
    on_gpu = [t for t in on_gpu if t.state == "done"]
    assert len(on_gpu) >= 6 and all(t.info["gpus"] for t in on_gpu)
    for a in on_gpu:
        for b in on_gpu:
            overlap = a is not b and a.info["start"] < b.info["end"] and b.info["start"] < a.info["end"]
            assert not overlap or a.info["gpus"] != b.info["gpus"], (a.key, b.key)


def test_a_second_run_all_while_the_grid_is_live_attaches_and_submits_nothing(runs):
    assert "re-attaching to the run's grid" in runs["attached"]
    state = runs["state"]
    assert {t.key: t.id for t in state.tasks} == runs["submitted"]
    named = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%k|%F"], capture_output=True, text=True).stdout
    run = str(layouts(runs)[1].root)
    ours = {line.split("|")[1] for line in named.splitlines() if line.split("|")[0] == run}
    assert ours
    assert ours <= {i.split("_")[0] for i in runs["submitted"].values() if i}


def test_status_lists_every_job_and_cancel_finds_nothing_to_stop(runs):
    args = with_sets(on_slurm(runs["root"]))
    status = CliRunner().invoke(cli, ["status", *args])
    assert status.exit_code == 0, status.output
    for task in runs["state"].tasks:
        assert task.key in status.output
    assert "no_such_results" in status.output  # a failed job's last log lines
    cancel = CliRunner().invoke(cli, ["cancel", *args])
    assert "no job was queued or running" in cancel.output
    print(f"SLURM grid test: {runs['seconds']:.0f} s in all, inline run {runs['inline_seconds']:.0f} s")


def test_a_rerun_submits_only_unfinished_work_and_cancel_stops_it(runs):
    """Last (it replaces the grid record): the finished run again submits the broken method's jobs and the
    closing job, nothing else; inline run-all is refused beside them; cancel stops them."""
    args = with_sets(on_slurm(runs["root"]))
    again = pipelines("run-all", "--detach", "--no-progress", *args)
    output = again.communicate(timeout=300)[0]
    assert again.returncode == 0, output
    state = GridState.load(layouts(runs)[1].grid.state)
    submitted = {t.key for t in state.tasks if t.id}
    assert submitted == {"fuse/broken", "metrics/broken", f"detection/{MODEL}/broken/seed0",
                         f"detection/{MODEL}/broken/seed1", "compare"}
    assert all(t.state == "skipped" for t in state.tasks if t.key not in submitted)
    inline = CliRunner().invoke(cli, ["run-all", "--no-progress", *args, "-s", "run.executor=inline"])
    assert inline.exit_code == 1 and "still queued or running" in inline.output, inline.output
    cancel = CliRunner().invoke(cli, ["cancel", *args])
    assert cancel.exit_code == 0 and "cancelled" in cancel.output, cancel.output
    ids = [t.id for t in state.tasks if t.id]
    end = time.time() + 60
    while [s for s, _ in squeue(ids).values() if s in LIVE] and time.time() < end:
        time.sleep(1)
    assert not [s for s, _ in squeue(ids).values() if s in LIVE]
