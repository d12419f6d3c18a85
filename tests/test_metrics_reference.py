"""The conventions against the toolkits' own numbers (../shared/data): CDDFuse's evaluator for
``cddfuse``, VIFB's MATLAB values for ``vifb``; and ``pipelines metrics --fused`` on VIFB's folders."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from fusion.metrics import evaluate_files

VIFB_NAMES = {"Avg_gradient": "AG", "Cross_entropy": "CE", "Edge_intensity": "EI", "Entropy": "EN",
              "Mutinf": "MI", "Psnr": "PSNR", "Qabf": "Qabf", "Qcb": "Qcb", "Qcv": "Qcv", "Rmse": "RMSE",
              "Spatial_frequency": "SF", "Ssim": "SSIM", "Variance": "SD"}


@pytest.fixture(scope="module")
def metrics_reference(shared_path) -> Path:
    return shared_path("data/metrics_reference")


@pytest.fixture(scope="module")
def vifb_subset(shared_path) -> Path:
    return shared_path("data/vifb_subset")


def test_cddfuse_convention_matches_the_evaluator(metrics_reference, msrs_det20):
    """Every value to 1e-6 relative. The evaluator works in float32 on what it reads, and so does the
    convention; the residuals (<= 4e-7) are float32 rounding in sums whose order differs between
    NumPy versions. SSIM matches to float precision since scikit-image still computes in float32."""
    reference = json.loads((metrics_reference / "cddfuse_evaluator.json").read_text())
    assert len(reference) == 18
    for key, expected in reference.items():
        method, stem = key.split("/")
        got = evaluate_files(metrics_reference / "fused" / method / f"{stem}.png", msrs_det20 / "ir" / f"{stem}.png",
                             msrs_det20 / "vi" / f"{stem}.png", "cddfuse")
        assert set(got) == set(expected)
        for name, value in expected.items():
            assert got[name] == pytest.approx(value, rel=1e-4 if name == "SSIM" else 1e-6), (key, name)


def test_vifb_convention_matches_vifb(vifb_subset):
    """VIFB printed 4-5 significant digits of values computed from the same JPEG files."""
    reference = pd.read_csv(vifb_subset / "metrics.csv")
    assert set(reference["metric"]) == set(VIFB_NAMES)
    for (pair, method), rows in reference.groupby(["pair", "method"]):
        got = evaluate_files(vifb_subset / "fused" / method / f"{pair}.jpg", vifb_subset / "input" / "IR" / f"{pair}.jpg",
                             vifb_subset / "input" / "VI" / f"{pair}.jpg", "vifb")
        for metric, value in zip(rows["metric"], rows["value"]):
            assert got[VIFB_NAMES[metric]] == pytest.approx(value, rel=1e-3), (pair, method, metric)


def test_metrics_command_on_folders_from_outside(vifb_subset, tmp_path):
    from click.testing import CliRunner

    from pipelines.cli import cli

    out = tmp_path / "gff"
    args = ["metrics", "--fused", str(vifb_subset / "fused" / "GFF"), "--ir", str(vifb_subset / "input" / "IR"),
            "--vi", str(vifb_subset / "input" / "VI"), "--out", str(out), "--convention", "vifb"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    per_image = pd.read_csv(out / "metrics.csv").set_index("stem")
    assert sorted(per_image.index) == ["carLight", "elecbike", "fight", "manCall", "snow"]
    reference = pd.read_csv(vifb_subset / "metrics.csv").query("method == 'GFF'")
    for pair, metric, value in zip(reference["pair"], reference["metric"], reference["value"]):
        assert per_image.at[pair, VIFB_NAMES[metric]] == pytest.approx(value, rel=1e-3)
    summary = pd.read_csv(out / "summary.csv").iloc[0]
    assert summary["method"] == "GFF" and summary["convention"] == "vifb" and summary["images"] == 5
    assert summary["Qcb_n"] == 5 and summary["Qcb"] == pytest.approx(per_image["Qcb"].mean())

    lonely = tmp_path / "ir_partial"
    lonely.mkdir()
    (lonely / "snow.jpg").write_bytes((vifb_subset / "input" / "IR" / "snow.jpg").read_bytes())
    args[4] = str(lonely)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code != 0 and "missing in ir: carLight, elecbike, fight, manCall" in result.output
    (lonely / "notes.txt").write_text("x")
    assert "notes.txt: not an image file" in CliRunner().invoke(cli, args).output
