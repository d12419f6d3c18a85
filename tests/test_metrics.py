"""Decision-layer entropy limits; the resumable metrics stage on a tiny benchmark of real MSRS pairs
(the metric definitions: test_metrics_definitions.py, the toolkits' values: test_metrics_reference.py)."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.signal import convolve2d

from fusion.color import to_uint8
from fusion.metrics import evaluate_files, get_convention
from fusion.perception import build_resnet50, softmax_entropy
from fusionbench.benchmark import record_split_lists
from fusionbench.images import read_ir, read_vi, write_image
from pipelines.config import load_config


def textured(seed: int, shape: tuple[int, int] = (72, 66)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    smooth = convolve2d(rng.uniform(0, 255, (shape[0] + 4, shape[1] + 4)), np.ones((5, 5)) / 25, mode="valid")
    return np.round(np.clip(smooth + rng.normal(0, 20, shape), 0, 255))


# --- decision-layer entropy -------------------------------------------------------------------

def test_entropy_of_one_hot_and_uniform_softmax():
    one_hot = torch.zeros(2, 1000)
    one_hot[0, 3] = one_hot[1, 999] = 1e4
    assert softmax_entropy(one_hot).tolist() == [0.0, 0.0]
    assert softmax_entropy(torch.zeros(3, 1000)) == pytest.approx(math.log(1000), rel=1e-6)


def test_image_entropies_through_resnet50(tmp_path):
    from pipelines.metrics import image_entropies

    model, source = build_resnet50(allow_random=True)
    paths = []
    for k, shape in enumerate([(40, 48), (40, 48), (32, 32)]):
        write_image(tmp_path / f"{k}.png", textured(k, shape).astype(np.uint8))
        paths.append(tmp_path / f"{k}.png")
    values = image_entropies(model, paths, torch.device("cpu"))
    assert len(values) == 3 and all(0 < v < math.log(1000) for v in values)
    torch.nn.init.zeros_(model.fc.weight)
    torch.nn.init.zeros_(model.fc.bias)
    assert image_entropies(model, paths, torch.device("cpu")) == pytest.approx([math.log(1000)] * 3, rel=1e-6)
    model.fc.bias.data[17] = 1e4
    assert image_entropies(model, paths, torch.device("cpu")) == pytest.approx([0.0] * 3, abs=1e-6)
    assert source.is_random


# --- the stage --------------------------------------------------------------------------------

def make_benchmark(root: Path, msrs_det20: Path, test_stems: list[str], size=(96, 80)) -> Path:
    """A minimal prepared benchmark (manifest and split lists) over crops of real MSRS pairs."""
    pairs = []
    for stem in test_stems:
        ir = read_ir(msrs_det20 / "ir" / f"{stem}.png")[: size[1], : size[0]]
        vi = read_vi(msrs_det20 / "vi" / f"{stem}.png")[: size[1], : size[0]]
        write_image(root / "src" / "ir" / f"{stem}.png", to_uint8(ir))
        write_image(root / "src" / "vi" / f"{stem}.png", to_uint8(vi))
        pairs.append({"stem": stem, "ir": str(root / "src" / "ir" / f"{stem}.png"),
                      "vi": str(root / "src" / "vi" / f"{stem}.png"),
                      "width": size[0], "height": size[1], "split": "test"})
    bench = root / "benchmark"
    (bench / "splits").mkdir(parents=True)
    for split in ("train", "val"):
        (bench / "splits" / f"{split}.txt").write_text("")
    (bench / "splits" / "test.txt").write_text("\n".join(test_stems) + "\n")
    (bench / "manifest.json").write_text(json.dumps({"classes": ["person", "car"], "pairs": pairs,
                                                     "split_lists": record_split_lists(bench)}))
    return bench


def test_metrics_stage_is_resumable(tmp_path, msrs_det20, caplog):
    from pipelines.fuse import fuse_method
    from pipelines.metrics import run_metrics

    bench = make_benchmark(tmp_path, msrs_det20, ["00004N", "00055D"])
    overrides = [f"run.root={tmp_path / 'runs'}", f"data.benchmark={bench}", "fusion.workers=1",
                 "fusion.methods=[ir,average,gff]", "perception.allow_random=true"]
    config = load_config("sample", overrides)
    for method in ("ir", "average"):
        fuse_method(config, method, progress=False)
    summary = pd.read_csv(run_metrics(config))
    assert "computing it again" not in caplog.text  # a first computation is no repair
    metrics_dir = tmp_path / "runs" / "sample" / "metrics"
    per_image = pd.read_csv(metrics_dir / "average" / "metrics.csv", dtype={"stem": str})
    assert per_image["stem"].tolist() == ["00004N", "00055D"]
    first = evaluate_files(bench / "fused" / "average" / "images" / "test" / "00004N.png",
                           tmp_path / "src" / "ir" / "00004N.png", tmp_path / "src" / "vi" / "00004N.png")
    assert list(per_image.columns) == ["stem", *get_convention("cddfuse").metrics]
    assert per_image.iloc[0][list(first)].to_numpy(float) == pytest.approx(list(first.values()), rel=1e-9)
    rows = summary.set_index("method")
    assert rows.loc["average", "SF"] == pytest.approx(per_image["SF"].mean(), rel=1e-9)
    assert rows.loc["ir", "CC"] < 1.0 and rows.loc["ir", "images"] == 2 and rows.loc["ir", "convention"] == "cddfuse"
    # F = IR: SCD is undefined on both images; it is counted, not averaged as if there were fewer images
    assert rows.loc["ir", "SCD_n"] == 0 and math.isnan(rows.loc["ir", "SCD"]) and rows.loc["ir", "VIF_n"] == 2
    assert rows.loc["average", "perception"] == "random"
    entropy = pd.read_csv(metrics_dir / "average" / "entropy.csv")["entropy"]
    assert rows.loc["average", "entropy_median"] == pytest.approx(entropy.median(), rel=1e-5)
    assert rows.loc["gff"].drop("images").isna().all()  # missing, never zero

    stamp = (metrics_dir / "average" / "metrics.csv").stat().st_mtime_ns
    run_metrics(config)
    assert (metrics_dir / "average" / "metrics.csv").stat().st_mtime_ns == stamp  # up to date: skipped
    newer = (metrics_dir / "average" / "metrics.csv").stat().st_mtime + 5
    os.utime(bench / "fused" / "average" / "manifest.json", (newer, newer))  # a date is not content
    run_metrics(config)
    assert (metrics_dir / "average" / "metrics.csv").stat().st_mtime_ns == stamp
    written = (metrics_dir / "average" / "metrics.csv").read_text()
    lines = written.splitlines()
    (metrics_dir / "average" / "metrics.csv").write_text("\n".join([lines[0], lines[1] + "7", *lines[2:]]) + "\n")
    run_metrics(config)
    assert (metrics_dir / "average" / "metrics.csv").read_text() == written  # recomputed from the fused set

    # metrics -m X merges X into the summary instead of rewriting it with X alone
    fuse_method(config, "max", progress=False)
    merged = pd.read_csv(run_metrics(config, ["max"])).set_index("method")
    assert list(merged.index) == ["ir", "average", "gff", "max"]
    assert merged.loc["average", "SF"] == pytest.approx(rows.loc["average", "SF"], rel=1e-9)

    # another convention: the files are recomputed with its metrics
    vifb = load_config("sample", [*overrides, "metrics.convention=vifb"])
    summary = pd.read_csv(run_metrics(vifb, ["average"])).set_index("method")
    assert "Qcb" in pd.read_csv(metrics_dir / "average" / "metrics.csv").columns
    assert summary.loc["average", "convention"] == "vifb" and summary.loc["average", "Qcb_n"] == 2
    assert pd.isna(summary.loc["ir", "images"])  # computed under cddfuse: missing until recomputed


def test_metrics_command_refuses_random_weights_unless_accepted(tmp_path, msrs_det20):
    from click.testing import CliRunner

    from pipelines.cli import cli

    bench = make_benchmark(tmp_path, msrs_det20, ["00004N"])
    result = CliRunner().invoke(cli, ["metrics", "-s", f"run.root={tmp_path / 'runs'}", "-s", f"data.benchmark={bench}",
                                      "-s", "perception.allow_random=false"])
    assert result.exit_code == 2
    assert "no ResNet50 weights given" in result.output and "perception.allow_random=true" in result.output
