"""Fusion metrics on hand-computed cases, identity cases and against independent implementations;
decision-layer entropy limits; the resumable metrics stage on a tiny benchmark of real MSRS pairs."""
from __future__ import annotations

import json
import math
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.signal import convolve2d
from skimage.metrics import structural_similarity as skimage_ssim

from fusion import metrics as M
from fusion.color import to_uint8
from fusion.io import read_ir, read_vi, write_image
from fusion.perception import build_resnet50, softmax_entropy
from pipelines.config import load_config

Q_PERFECT = 0.9994 / (1 + math.exp(-15 * 0.5)) * 0.9879 / (1 + math.exp(-22 * 0.2))


def textured(seed: int, shape: tuple[int, int] = (72, 66)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    smooth = convolve2d(rng.uniform(0, 255, (shape[0] + 4, shape[1] + 4)), np.ones((5, 5)) / 25, mode="valid")
    return np.round(np.clip(smooth + rng.normal(0, 20, shape), 0, 255))


# --- hand-computed values ---------------------------------------------------------------------

def test_single_image_metrics_by_hand():
    assert M.en(np.array([[0.0, 0.0], [255.0, 255.0]])) == pytest.approx(1.0)
    assert M.en(np.array([[0.0, 1.0], [2.0, 3.0]])) == pytest.approx(2.0)
    assert M.en(np.full((3, 3), 7.0)) == 0.0
    assert M.sd(np.array([[0.0, 2.0]])) == pytest.approx(1.0)
    ramp = np.array([[0.0, 1.0], [2.0, 3.0]])
    assert M.sf(ramp) == pytest.approx(math.sqrt(1 + 4))  # row differences 1, column differences 2
    assert M.ag(ramp) == pytest.approx(math.sqrt((1 + 4) / 2))


def test_metrics_against_sources_by_hand():
    ir = np.array([[0.0, 255.0], [0.0, 255.0]])
    flat = np.full((2, 2), 9.0)
    assert M.mi(ir, ir, flat) == pytest.approx(math.log(2))  # one bit, in nats; nothing shared with flat
    assert M.cc(ir, ir, 255.0 - ir) == pytest.approx(0.0)  # r = 1 and r = -1
    a, b = textured(1), textured(2)
    assert M.scd(a + b, a, b) == pytest.approx(2.0)  # F - VI = IR and F - IR = VI
    f, src = np.array([[0.0, 10.0]]), np.array([[0.0, 0.0]])
    assert M.psnr(f, f, src) == pytest.approx(10 * math.log10(100 / 25))  # MSE (0 + 50) / 2, peak 10
    assert M.psnr(f, f, f) == math.inf


# --- identity cases ---------------------------------------------------------------------------

def test_identity_cases():
    ir, vi = textured(3), textured(4)
    assert M.structural_similarity(ir, ir) == pytest.approx(1.0)
    assert M.ssim(ir, ir, vi) == pytest.approx(1.0 + M.structural_similarity(ir, vi))
    assert M.vif_p(ir, ir) == pytest.approx(1.0, abs=1e-6)
    assert M.vif(ir, ir, vi) == pytest.approx(1.0 + M.vif_p(vi, ir), abs=1e-6)
    assert M.vif_p(np.full((70, 70), 3.0), np.full((70, 70), 3.0)) == 1.0  # no signal at all
    with pytest.raises(ValueError, match="at least 65"):
        M.vif_p(ir[:64], ir[:64])
    assert M.qabf(ir, ir, ir) == pytest.approx(Q_PERFECT)
    assert M.mi(ir, ir, vi) == pytest.approx(M.en(ir) * math.log(2) + M._mutual_information(ir, vi))
    assert M.cc(ir, ir, ir) == pytest.approx(1.0)
    assert math.isnan(M.scd(ir, ir, vi))  # F - IR = 0 has no correlation: undefined, not zero
    values = M.evaluate(ir, ir, vi)
    assert list(values) == list(M.METRICS)
    assert values["EN"] == M.en(ir) and values["SF"] == M.sf(ir)


def test_evaluate_rejects_mismatched_sizes(tmp_path):
    for name, shape in (("f", (8, 8)), ("ir", (8, 8)), ("vi", (8, 9))):
        write_image(tmp_path / f"{name}.png", np.zeros(shape, np.uint8))
    with pytest.raises(ValueError, match=r"f\.png.*differs"):
        M.evaluate_files(tmp_path / "f.png", tmp_path / "ir.png", tmp_path / "vi.png")


def test_grey_conversion_matches_the_evaluator():
    rgb = np.array([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.2, 0.4, 0.6]]], np.float32)
    expected = np.round(np.array([0.299, 0.587, 0.114, 0.299 * 0.2 + 0.587 * 0.4 + 0.114 * 0.6]) * 255)
    np.testing.assert_array_equal(M.to_grey255(rgb)[0], expected)


# --- independent implementations --------------------------------------------------------------

def entropy_loop(f):
    counts = Counter(int(v) for v in f.ravel())
    return -sum(c / f.size * math.log2(c / f.size) for c in counts.values())


def sf_loop(f):
    h, w = f.shape
    rf = sum((f[i, j] - f[i, j - 1]) ** 2 for i in range(h) for j in range(1, w)) / (h * (w - 1))
    cf = sum((f[i, j] - f[i - 1, j]) ** 2 for i in range(1, h) for j in range(w)) / ((h - 1) * w)
    return math.sqrt(rf + cf)


def ag_loop(f):
    h, w = f.shape

    def d(get, k, n):  # one-sided at the ends, central inside
        return get(1) - get(0) if k == 0 else get(n - 1) - get(n - 2) if k == n - 1 else (get(k + 1) - get(k - 1)) / 2

    total = 0.0
    for i in range(h):
        for j in range(w):
            gx = d(lambda c: f[i, c], j, w)
            gy = d(lambda r: f[r, j], i, h)
            total += math.sqrt((gx * gx + gy * gy) / 2)
    return total / (h * w)


def mi_histogram(x, y):
    joint, _, _ = np.histogram2d(x.ravel(), y.ravel(), bins=256, range=[[0, 256], [0, 256]])
    p = joint / joint.sum()
    px, py = p.sum(1, keepdims=True), p.sum(0, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p / (px * py)), 0.0)
    return terms.sum()


def ssim_windows(x, y, data_range, win=7):
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    values = []
    for i in range(x.shape[0] - win + 1):
        for j in range(x.shape[1] - win + 1):
            a, b = x[i:i + win, j:j + win].ravel(), y[i:i + win, j:j + win].ravel()
            cov = np.cov(a, b)  # sample covariance, as scikit-image
            values.append((2 * a.mean() * b.mean() + c1) * (2 * cov[0, 1] + c2)
                          / ((a.mean() ** 2 + b.mean() ** 2 + c1) * (cov[0, 0] + cov[1, 1] + c2)))
    return float(np.mean(values))


def vif_convolve(ref, dist):
    num = den = 0.0
    for scale in range(4):
        n = 2 ** (4 - scale) + 1
        ax = np.arange(n) - (n - 1) / 2
        win = np.exp(-(ax[:, None] ** 2 + ax[None] ** 2) / (2 * (n / 5) ** 2))
        win[win < np.finfo(float).eps * win.max()] = 0
        win /= win.sum()
        if scale:
            ref, dist = convolve2d(ref, win, "valid")[::2, ::2], convolve2d(dist, win, "valid")[::2, ::2]
        mu1, mu2 = convolve2d(ref, win, "valid"), convolve2d(dist, win, "valid")
        s1 = np.maximum(convolve2d(ref * ref, win, "valid") - mu1 ** 2, 0)
        s2 = np.maximum(convolve2d(dist * dist, win, "valid") - mu2 ** 2, 0)
        s12 = convolve2d(ref * dist, win, "valid") - mu1 * mu2
        for k in np.ndindex(s1.shape):  # the guards, pixel by pixel
            a, b, c = s1[k], s2[k], s12[k]
            g = c / (a + 1e-10)
            sv = b - g * c
            if a < 1e-10:
                g, sv, a = 0.0, b, 0.0
            if b < 1e-10:
                g, sv = 0.0, 0.0
            if g < 0:
                g, sv = 0.0, b
            sv = max(sv, 1e-10)
            num += math.log10(1 + g * g * a / (sv + 2))
            den += math.log10(1 + a / 2)
    return num / den


def qabf_convolve(f, a, b):
    def edges(x):
        sx = convolve2d(x, [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], "same")
        sy = convolve2d(x, [[1, 2, 1], [0, 0, 0], [-1, -2, -1]], "same")
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.hypot(sx, sy), np.where(sx == 0, np.pi / 2, np.arctan(sy / sx))

    (gf, af), total, weight = edges(f), 0.0, 0.0
    for src in (a, b):
        gs, as_ = edges(src)
        for k in np.ndindex(gs.shape):
            ratio = 0.0 if max(gs[k], gf[k]) == 0 else min(gs[k], gf[k]) / max(gs[k], gf[k])
            qg = 0.9994 / (1 + math.exp(-15 * (ratio - 0.5)))
            qa = 0.9879 / (1 + math.exp(-22 * (1 - abs(as_[k] - af[k]) / (np.pi / 2) - 0.8)))
            total += qg * qa * gs[k]
            weight += gs[k]
    return total / weight


@pytest.fixture(scope="module")
def real_triple(msrs_det20):
    """A 72 x 70 crop of a real MSRS pair and a simple fusion of it, as evaluator grey levels."""
    ir = M.load_grey255(msrs_det20 / "ir" / "00055D.png")[200:272, 300:370]
    vi = M.load_grey255(msrs_det20 / "vi" / "00055D.png")[200:272, 300:370]
    return np.round(np.maximum(ir, vi) * 0.6 + vi * 0.4), ir, vi


def test_agreement_with_independent_implementations(real_triple):
    f, ir, vi = real_triple
    assert M.en(f) == pytest.approx(entropy_loop(f), rel=1e-12)
    assert M.sf(f) == pytest.approx(sf_loop(f), rel=1e-12)
    assert M.ag(f) == pytest.approx(ag_loop(f), rel=1e-12)
    assert M.mi(f, ir, vi) == pytest.approx(mi_histogram(f, ir) + mi_histogram(f, vi), rel=1e-10)
    for data_range in (2.0, 255.0):
        ours = M.structural_similarity(f, ir, data_range)
        assert ours == pytest.approx(ssim_windows(f, ir, data_range), rel=1e-9)
        assert ours == pytest.approx(skimage_ssim(f, ir, data_range=data_range), rel=1e-9)
    assert M.vif_p(ir, f) == pytest.approx(vif_convolve(ir, f), rel=1e-9)
    assert M.qabf(f, ir, vi) == pytest.approx(qabf_convolve(f, ir, vi), rel=1e-9)


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
    for k, shape in enumerate([(40, 48), (40, 48), (32, 32)]):  # two sizes: two batches
        write_image(tmp_path / f"{k}.png", textured(k, shape).astype(np.uint8))
        paths.append(tmp_path / f"{k}.png")
    values = image_entropies(model, paths, torch.device("cpu"), batch_size=4)
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
    (bench / "manifest.json").write_text(json.dumps({"classes": ["person", "car"], "pairs": pairs}))
    return bench


def test_metrics_stage_is_resumable(tmp_path, msrs_det20):
    from pipelines.fuse import fuse_method
    from pipelines.metrics import run_metrics

    bench = make_benchmark(tmp_path, msrs_det20, ["00004N", "00055D"])
    config = load_config("sample", [f"run.root={tmp_path / 'runs'}", f"data.benchmark={bench}", "fusion.workers=1",
                                    "fusion.methods=[ir,average,gff]", "perception.allow_random=true"])
    for method in ("ir", "average"):
        fuse_method(config, method, progress=False)
    summary = pd.read_csv(run_metrics(config))
    metrics_dir = tmp_path / "runs" / "sample" / "metrics"
    per_image = pd.read_csv(metrics_dir / "average" / "metrics.csv", dtype={"stem": str})
    assert per_image["stem"].tolist() == ["00004N", "00055D"]
    first = M.evaluate_files(bench / "fused" / "average" / "images" / "test" / "00004N.png",
                             tmp_path / "src" / "ir" / "00004N.png", tmp_path / "src" / "vi" / "00004N.png")
    assert per_image.iloc[0][list(M.METRICS)].to_numpy(float) == pytest.approx(list(first.values()), rel=1e-5)
    rows = summary.set_index("method")
    assert rows.loc["average", "SF"] == pytest.approx(per_image["SF"].mean(), rel=1e-5)
    assert rows.loc["ir", "CC"] < 1.0 and rows.loc["ir", "images"] == 2
    assert rows.loc["average", "perception"] == "random"
    entropy = pd.read_csv(metrics_dir / "average" / "entropy.csv")["entropy"]
    assert rows.loc["average", "entropy_median"] == pytest.approx(entropy.median(), rel=1e-5)
    assert rows.loc["gff"].drop("images").isna().all()  # missing, never zero

    stamp = (metrics_dir / "average" / "metrics.csv").stat().st_mtime_ns
    run_metrics(config)
    assert (metrics_dir / "average" / "metrics.csv").stat().st_mtime_ns == stamp  # up to date: skipped
    newer = (metrics_dir / "average" / "metrics.csv").stat().st_mtime + 5
    os.utime(bench / "fused" / "average" / "manifest.json", (newer, newer))  # the set was fused again
    run_metrics(config)
    assert (metrics_dir / "average" / "metrics.csv").stat().st_mtime_ns != stamp


def test_metrics_command_refuses_random_weights_unless_accepted(tmp_path, msrs_det20):
    from click.testing import CliRunner

    from pipelines.cli import cli

    bench = make_benchmark(tmp_path, msrs_det20, ["00004N"])
    result = CliRunner().invoke(cli, ["metrics", "-s", f"run.root={tmp_path / 'runs'}", "-s", f"data.benchmark={bench}",
                                      "-s", "perception.allow_random=false"])
    assert result.exit_code == 2
    assert "no ResNet50 weights given" in result.output and "perception.allow_random=true" in result.output
