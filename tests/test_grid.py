"""The job graph run-all submits to SLURM (pipelines/grid.py), without a scheduler: its shape for the paper
config, each job's dependencies, resources and locks, and that the inline path imports no engine."""
from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

from pipelines.config import load_config, run_layout
from pipelines.grid import plan

REPO = Path(__file__).resolve().parents[1]


def test_the_paper_grid_has_one_job_per_unit_of_work(tmp_path):
    config = load_config("paper", [f"run.root={tmp_path}"])
    jobs = {job.key: job for job in plan(config)}
    assert Counter(j.kind for j in jobs.values()) == {"train": 2, "fuse": 10, "metrics": 10, "downstream": 10, "compare": 1}
    assert sum(len(j.tasks) for j in jobs.values()) == 53
    assert [t.key for t in jobs["detection/yolov5s/gff"].tasks] == [
        "detection/yolov5s/gff/seed0", "detection/yolov5s/gff/seed1", "detection/yolov5s/gff/seed2"]
    assert jobs["fuse/s4fusion"].after == ("train/s4fusion",) and jobs["fuse/gff"].after == ()
    assert jobs["detection/yolov5s/gff"].after == ("fuse/gff",) and jobs["metrics/gff"].after == ("fuse/gff",)
    assert set(jobs["compare"].after) == set(jobs) - {"compare"}
    order = list(jobs)
    assert all(order.index(dep) < order.index(key) for key, job in jobs.items() for dep in job.after)
    assert jobs["fuse/gff"].resources.gpus == 0 and jobs["fuse/s4fusion"].resources.gpus == 1
    assert jobs["train/s4fusion"].resources.minutes == config.executor.time.train


def test_seeds_of_a_method_lock_their_own_unit_and_share_the_methods_lock(tmp_path):
    config = load_config("paper", [f"run.root={tmp_path}"])
    detect = next(job for job in plan(config) if job.key == "detection/yolov5s/gff")
    locks = [{(lock.path.name, lock.shared) for lock in task.locks} for task in detect.tasks]
    assert all((".gff.lock", True) in held and (".fusionbench.lock", True) in held for held in locks)
    assert [sorted(n for n, shared in held if not shared) for held in locks] == [
        [".gff.seed0.lock"], [".gff.seed1.lock"], [".gff.seed2.lock"]]
    closing = next(job for job in plan(config) if job.key == "compare").tasks[0]
    assert all(not lock.shared for lock in closing.locks)  # the whole run: nothing else writes then
    assert {lock.path.parent for lock in closing.locks} == {run_layout(config).root, run_layout(config).benchmark}


def test_two_tasks_add_their_arrays_from_what_they_declare(tmp_path):
    """The paper grid with both tasks and two detectors: 10 arrays per (task, model), seeds as declared."""
    config = load_config("paper", [f"run.root={tmp_path}", "tasks={detection: [yolov5s, yolov8s], segmentation: [segformer_b0]}",
                                   "segment.seeds=[0, 1]"])
    jobs = plan(config)
    assert Counter(j.kind for j in jobs)["downstream"] == 30
    assert sum(len(j.tasks) for j in jobs if j.key.startswith("segmentation/")) == 20
    assert sum(len(j.tasks) for j in jobs if j.key.startswith("detection/yolov8s/")) == 30


def test_a_learned_method_with_weights_is_not_trained(tmp_path):
    config = load_config("paper", [f"run.root={tmp_path}", f"methods.s4fusion.weights={tmp_path / 'model.pkl'}"])
    keys = [job.key for job in plan(config)]
    assert "train/s4fusion" not in keys and "train/smfnet" in keys


def test_nothing_of_an_unprepared_run_is_done(tmp_path):
    from pipelines.grid import is_done

    config = load_config("paper", [f"run.root={tmp_path}"])
    assert not any(is_done(config, task) for job in plan(config) for task in job.tasks)


def test_the_inline_path_imports_no_engine():
    code = ("import sys; from pipelines.config import load_config; from pipelines.grid import plan; "
            "import pipelines.run_all, pipelines.commands.run_all, pipelines.commands.status; "
            "plan(load_config('paper')); assert 'submitit' not in sys.modules, 'submitit imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": ""})


def test_planning_the_grid_imports_no_downstream_library_nor_torchvision(tmp_path):
    """The submitter plans and tests what is done without the detectors' and segmenters' libraries, nor
    torchvision (their imports took half a minute under load); torch it still imports, through the learned
    fusers' registry (their architecture modules define their networks)."""
    code = ("import sys; from pipelines.config import load_config; from pipelines.grid import plan, is_done; "
            f"config = load_config('paper', ['run.root={tmp_path}', "
            "'tasks={detection: [yolov5s], segmentation: [segformer_b0]}']); "
            "[is_done(config, task) for job in plan(config) for task in job.tasks]; "
            "loaded = {'ultralytics', 'segmentation_models_pytorch', 'timm', 'pycocotools', 'torchvision'} & set(sys.modules); "
            "assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": ""})


def test_a_job_computes_on_the_gpus_slurm_gave_it():
    from pipelines.executors.slurm import job_config

    config = load_config("paper", ["run.executor=slurm", "run.device=cuda:3"])  # no GPU needed here
    assert job_config(config, gpus=1).run.device == "auto" and job_config(config, gpus=0).run.device == "cpu"
    assert config.run.device == "cuda:3"  # the submitter's config is left as it was


def test_a_time_limit_warning_while_a_job_starts_waits_for_its_handler():
    """A job holds SLURM's warning (USR2, whose default action ends a process) from its first line until
    submitit listens: then the handler gets it, and the job requeues itself instead of dying."""
    code = ("import os, signal, logging; from pipelines.executors.job import WARNING, hold_warning, release_warning\n"
            "logging.basicConfig(format='%(message)s')\n"
            "hold_warning(); os.kill(os.getpid(), WARNING); print('still starting', flush=True)\n"
            "signal.signal(WARNING, lambda *_: print('handled', flush=True)); release_warning('train/x')\n"
            "print('ran on', flush=True)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": ""},
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["still", "starting", "handled", "ran", "on"]
    assert "train/x: warned of its time limit while it started" in done.stderr


def test_a_learned_methods_fusion_in_shards_is_an_array_its_dependents_wait_for(tmp_path):
    config = load_config("paper", [f"run.root={tmp_path}", "executor.fuse_shards=4"])
    jobs = {job.key: job for job in plan(config)}
    shards = jobs["fuse/s4fusion"].tasks
    assert [t.key for t in shards] == [f"fuse/s4fusion/shard-{i}-of-4" for i in range(1, 5)]
    assert [t.steps[0].kwargs["shard"].index for t in shards] == [1, 2, 3, 4]
    locks = [{(lock.path.name, lock.shared) for lock in task.locks} for task in shards]
    assert all((".s4fusion.lock", True) in held for held in locks)  # the method's lock shared by its shards
    assert [sorted(n for n, shared in held if not shared) for held in locks] == [
        [f".s4fusion.shard-{i}-of-4.lock"] for i in range(1, 5)]
    assert jobs["fuse/s4fusion"].resources.gpus == 1 and jobs["fuse/s4fusion"].after == ("train/s4fusion",)
    assert [t.key for t in jobs["fuse/gff"].tasks] == ["fuse/gff"]  # a classical set stays one job
    assert jobs["detection/yolov5s/s4fusion"].after == ("fuse/s4fusion",) == jobs["metrics/s4fusion"].after
