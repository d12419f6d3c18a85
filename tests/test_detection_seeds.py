"""The detect stage with several detector seeds on the synthetic sample: one folder per (method, seed),
matches that reproduce pycocotools on the real predictions, the across-seed summary, the old layout
refused with a way out, and the compare stage on the real run."""
from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from runs import detect_method, detector, unit_files

from detection import matches
from detection.coco_eval import evaluate, load_ground_truth
from detection.map_statistics import point_values
from fusionbench.benchmark import Benchmark
from pipelines.compare import run_compare
from pipelines.config import load_config, run_layout
from pipelines.downstream import DownstreamError
from pipelines.fuse import fuse_method

METHODS = ("ir", "vi")


@pytest.fixture(scope="module")
def seeded_run(sample_benchmark: Benchmark, tmp_path_factory):
    """ir and vi, each detected with seeds 0 and 1 (1 epoch at 64 px: the mechanics, scores near 0)."""
    work = tmp_path_factory.mktemp("seeds")
    root = work / "benchmark"
    shutil.copytree(sample_benchmark.root, root, ignore=shutil.ignore_patterns("fused", "*.cache"))
    config = load_config("sample", [f"data.benchmark={root}", f"run.root={work / 'runs'}", "run.device=cpu",
                                    "fusion.workers=1", "detect.seeds=[0, 1]", "detect.epochs=1", "detect.imgsz=64",
                                    "detect.batch=4", "stats.bootstrap=200", "stats.permutations=200",
                                    f"fusion.methods=[{','.join(METHODS)}]"])
    for method in METHODS:
        fuse_method(config, method, progress=False)
    summaries = {method: detect_method(config, method) for method in METHODS}
    return config, Benchmark(root), summaries


def test_each_seed_has_its_folder_and_matches_reproduce_pycocotools(seeded_run):
    config, benchmark, summaries = seeded_run
    gt = load_ground_truth(benchmark.coco_path("test"))
    for method in METHODS:
        per_seed = []
        for seed in (0, 1):
            out = unit_files(config, method, seed).folder
            results = json.loads((out / "results.json").read_text())
            assert results["seed"] == seed and json.loads((out / "protocol.json").read_text())["seed"] == seed
            detections = json.loads((out / "test_predictions.json").read_text())
            assert detections, "conf 0.001 keeps boxes even for a 1-epoch detector"
            reference = evaluate(gt, detections)
            (point,) = point_values([matches.load(out / "matches.npz")])
            assert point[0] == pytest.approx(reference.map50, abs=1e-12) == results["map50"]
            assert point[1] == pytest.approx(reference.map50_95, abs=1e-12)
            low, high = results["map50_ci95"]
            assert 0.0 <= low <= high <= 1.0
            per_seed.append(results["map50"])
        entry = summaries[method]["statistics"]["map50"]
        assert entry["per_seed"] == pytest.approx(per_seed)
        assert entry["mean"] == pytest.approx(np.mean(per_seed)) and entry["n"] == 2
        assert entry["sd"] == pytest.approx(np.std(per_seed, ddof=1))
        assert summaries[method]["intervals"] == "seeds and images"
    losses = [pd.read_csv(unit_files(config, "vi", s).folder / "train" / "results.csv")["train/box_loss"].iloc[0] for s in (0, 1)]
    assert losses[0] != losses[1], "two seeds trained the same detector"


def test_matches_reproduce_pycocotools_on_real_predictions_with_found_objects(seeded_run):
    """A 1-epoch detector finds nothing at IoU 0.5 (AP 0 on both sides is no test), so its real predictions
    (their boxes, scores and ties) are mixed with jittered ground-truth boxes scored from the same scores."""
    config, benchmark, _ = seeded_run
    gt = load_ground_truth(benchmark.coco_path("test"))
    real = json.loads(unit_files(config, "vi", 0).predictions.read_text())
    rng = np.random.default_rng(0)
    found = [{"image_id": a["image_id"], "category_id": a["category_id"], "score": float(rng.choice([d["score"] for d in real])),
              "bbox": [round(v + rng.normal(0, 1.5), 3) for v in a["bbox"]]}
             for a in gt.dataset["annotations"] if rng.random() < 0.7]
    detections = real + found
    reference = evaluate(gt, detections)
    (point,) = point_values([matches.match(gt, detections)])
    assert 0.05 < reference.map50 < 0.95
    assert point[0] == pytest.approx(reference.map50, abs=1e-12)
    assert point[1] == pytest.approx(reference.map50_95, abs=1e-12)
    names = list(matches.match(gt, detections).classes)
    assert [v for v in point[2:] if not np.isnan(v)] == pytest.approx(
        [reference.per_class[c] for c in names if reference.per_class[c] is not None], abs=1e-12)


def test_old_layout_is_refused_with_how_to_move_it(seeded_run, tmp_path):
    """A method folder from before per-seed folders: refused with a command; after that command the rerun
    computes matches and intervals from the predictions without training again."""
    config, _, summaries = seeded_run
    old = load_config("sample", [*(f"{k}={v}" for k, v in (("run.root", tmp_path / "runs"),)),
                                 f"data.benchmark={config.data.benchmark}", "detect.seeds=[0]",
                                 "detect.epochs=1", "detect.imgsz=64", "detect.batch=4", "stats.bootstrap=200"])
    folder = detector(old).method("vi").folder
    shutil.copytree(unit_files(config, "vi", 0).folder, folder)
    (folder / "matches.npz").unlink()
    results = json.loads((folder / "results.json").read_text())
    for key in ("map50_ci95", "map50_95_ci95", "per_class_ci95", "bootstrap", "seed"):
        results.pop(key)
    (folder / "results.json").write_text(json.dumps(results))
    with pytest.raises(DownstreamError, match=r"old layout.*seed 0.*mkdir seed0") as refused:
        detect_method(old, "vi")
    command = str(refused.value).split(": cd ", 1)[1].split(" -- ")[0]
    subprocess.run(f"cd {command}", shell=True, check=True)
    stamp = (folder / "seed0" / "train" / "results.csv").stat().st_mtime_ns
    summary = detect_method(old, "vi")
    assert (folder / "seed0" / "train" / "results.csv").stat().st_mtime_ns == stamp  # nothing trained again
    assert summary["statistics"]["map50"]["mean"] == pytest.approx(summaries["vi"]["statistics"]["map50"]["per_seed"][0])
    assert (folder / "seed0" / "matches.npz").is_file()


def test_compare_on_the_real_run_is_deterministic_and_skips_when_done(seeded_run):
    config, _, summaries = seeded_run
    out = run_compare(config, list(METHODS))
    rows = pd.read_csv(out / "detection.csv")
    assert rows[["method", "reference"]].values.tolist() == [["vi", "ir"]]  # ir vs vi once; best is one of them
    row = rows.iloc[0]
    expected = summaries["vi"]["statistics"]["map50"]["mean"] - summaries["ir"]["statistics"]["map50"]["mean"]
    assert row["delta"] == pytest.approx(expected, abs=1e-12)
    assert row["ci_low"] <= row["ci_high"] and 1 / 201 <= row["p"] <= 1 and row["p_holm"] == row["p"]
    intervals = pd.read_csv(out / "detection_intervals.csv")
    vi = intervals[(intervals["method"] == "vi") & (intervals["statistic"] == "map50")].iloc[0]
    assert [vi["ci_low"], vi["ci_high"]] == pytest.approx(summaries["vi"]["statistics"]["map50"]["ci95"])
    files = {p.name: p.read_bytes() for p in out.iterdir()}
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    run_compare(config, list(METHODS))
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps  # unchanged inputs: nothing redone
    shutil.rmtree(out)
    run_compare(config, list(METHODS))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files  # deterministic for a given stats.seed


def test_a_run_from_before_downstream_tasks_is_refused_with_the_move_then_reused(seeded_run, tmp_path):
    """A run made before the task plug-in kept its detectors in <run>/detect/<method>/seed<k>/ with no model
    in protocol.json: refused with the command that moves it; after it, nothing is trained again."""
    config, _, summaries = seeded_run
    old = load_config("sample", [f"run.root={tmp_path / 'runs'}", f"data.benchmark={config.data.benchmark}",
                                 "detect.seeds=[0, 1]", "detect.epochs=1", "detect.imgsz=64", "detect.batch=4",
                                 "stats.bootstrap=200", "stats.permutations=200", "tasks.detection=[yolov5s]"])
    legacy = run_layout(old).root / "detect"
    shutil.copytree(detector(config).folder, legacy)
    for protocol in legacy.glob("*/seed*/protocol.json"):
        recorded = json.loads(protocol.read_text())
        recorded.pop("model")  # the key the plug-in added: old runs were all YOLOv5s
        protocol.write_text(json.dumps(recorded))
    with pytest.raises(DownstreamError, match=r"earlier version's layout.*mkdir -p .*&& mv .*detect .*detection/yolov5s") as refused:
        detect_method(old, "vi", model="yolov5s")
    subprocess.run(str(refused.value).split("(nothing is trained again): ", 1)[1], shell=True, check=True)
    trained = detector(old, "yolov5s").method("vi").seed(0).folder / "train" / "results.csv"
    stamp = trained.stat().st_mtime_ns
    summary = detect_method(old, "vi", model="yolov5s")
    assert trained.stat().st_mtime_ns == stamp  # reused, not trained again
    assert summary["statistics"] == summaries["vi"]["statistics"]
