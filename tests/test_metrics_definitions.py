"""Metric definitions on hand-computed cases, against independent float64 loops and scikit-image,
on degenerate input (every metric), and the input checks of each convention."""
from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from scipy.signal import convolve2d
from skimage.metrics import structural_similarity as skimage_ssim

from fusion.metrics import (
    CONVENTIONS,
    REGISTRY,
    ConventionError,
    MetricInputError,
    difference,
    evaluate,
    feature_mi,
    get_convention,
    gradients,
    images,
    information,
    intensity,
    structure,
    vif,
)

EXACT, CDDFUSE, VIFB = (get_convention(n) for n in ("exact", "cddfuse", "vifb"))
Q_PERFECT = 0.9994 / (1 + math.exp(-15 * 0.5)) * 0.9879 / (1 + math.exp(-22 * 0.2))


def textured(seed: int, shape: tuple[int, int] = (72, 66)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    smooth = convolve2d(rng.uniform(0, 255, (shape[0] + 4, shape[1] + 4)), np.ones((5, 5)) / 25, mode="valid")
    return np.round(np.clip(smooth + rng.normal(0, 20, shape), 0, 255))


# --- the registry and the conventions ---------------------------------------------------------

def test_registry_metadata_and_conventions():
    assert len(REGISTRY) >= 24
    assert set(CONVENTIONS["exact"].metrics) == set(REGISTRY)  # exact has every metric
    for name, info in REGISTRY.items():
        assert info.direction in ("higher", "lower") and info.reference and info.degenerate
        assert "exact" in info.conventions
    assert {n for n, i in REGISTRY.items() if i.direction == "lower"} == {"CE", "Nabf", "Qcv", "MSE", "RMSE"}
    assert REGISTRY["Qcb"].conventions == ("vifb", "exact") and "cddfuse" in REGISTRY["VIF"].conventions
    with pytest.raises(ConventionError, match="unknown metric convention 'matlab'.*cddfuse"):
        get_convention("matlab")
    with pytest.raises(ConventionError, match="Qcb do not exist in the 'cddfuse'"):
        evaluate(textured(1), textured(2), textured(3), "cddfuse", metrics=["EN", "Qcb"])


# --- hand-computed values ---------------------------------------------------------------------

def test_single_image_metrics_by_hand():
    z = np.zeros((2, 2))
    assert intensity.en(np.array([[0.0, 0.0], [255.0, 255.0]]), z, z, EXACT) == pytest.approx(1.0)
    assert intensity.en(np.array([[0.0, 1.0], [2.0, 3.0]]), z, z, EXACT) == pytest.approx(2.0)
    assert intensity.sd(np.array([[0.0, 2.0]]), z, z, EXACT) == pytest.approx(1.0)
    ramp = np.array([[0.0, 1.0], [2.0, 3.0]])
    assert intensity.sf(ramp, z, z, EXACT) == pytest.approx(math.sqrt(1 + 4))  # row diffs 1, column diffs 2
    assert intensity.sf(ramp, z, z, VIFB) == pytest.approx(math.sqrt((2 * 1 + 2 * 4) / 4))  # sums over H W
    assert intensity.ag(ramp, z, z, EXACT) == pytest.approx(math.sqrt((1 + 4) / 2))
    assert intensity.ag(ramp, z, z, VIFB) == pytest.approx(4 * math.sqrt((1 + 4) / 2) / 1)  # over (H-1)(W-1)
    step = np.array([[0.0, 0.0, 9.0]] * 3)  # Sobel with replicated borders: 0, 36, 36 per row
    assert intensity.ei(step, z, z, EXACT) == pytest.approx(36 * 2 / 3)


def test_metrics_against_sources_by_hand():
    ir = np.array([[0.0, 255.0], [0.0, 255.0]])
    flat = np.full((2, 2), 9.0)
    assert information.mi(ir, ir, flat, EXACT) == pytest.approx(math.log(2))  # one bit, in nats
    assert information.nmi(ir, ir, flat, EXACT) == pytest.approx(2 * (1 / 2 + 0 / 1))
    assert difference.cc(ir, ir, 255.0 - ir, EXACT) == pytest.approx(0.0)  # r = 1 and r = -1
    a, b = textured(1), textured(2)
    assert difference.scd(a + b, a, b, EXACT) == pytest.approx(2.0)  # F - VI = IR and F - IR = VI
    f, src = np.array([[0.0, 10.0]]), np.array([[0.0, 0.0]])
    assert difference.psnr(f, f, src, CDDFUSE) == pytest.approx(10 * math.log10(100 / 25))  # peak max F
    assert difference.psnr(f, f, src, EXACT) == pytest.approx(10 * math.log10(255 ** 2 / 25))
    assert difference.mse(f, f, src, EXACT) == 25 and difference.rmse(f, f, src, EXACT) == 5
    vifb_error = math.sqrt(100) / 2 / 2  # (sqrt(SSE) / (H W) of each source) / 2
    assert difference.rmse(f, f, src, VIFB) == pytest.approx(vifb_error)
    assert difference.psnr(f, f, src, VIFB) == pytest.approx(20 * math.log10(255 / math.sqrt(vifb_error)))
    # CE: IR histogram {0: .5, 255: .5} vs F's {0: 1}: only level 0 counts, .5 log2(.5 / 1) = -.5
    assert information.ce(np.zeros((2, 2)), ir, np.zeros((2, 2)), EXACT) == pytest.approx((-0.5 + 0) / 2)


def test_qabf_equal_strength_quirk():
    """Where a source's gradient equals F's, the toolkits take G = g_F (Q_g saturates at 0.9994),
    the definition G = 1."""
    ir = textured(5)
    one = gradients.qabf(ir, ir, ir, EXACT)
    quirk = gradients.qabf(ir, ir, ir, CDDFUSE.__class__(**{**CDDFUSE.__dict__, "dtype": np.float64}))
    assert one == pytest.approx(Q_PERFECT)
    assert quirk > one and quirk == pytest.approx(0.9994 * 0.9879 / (1 + math.exp(-4.4)), rel=1e-6)


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

    return sum(math.sqrt((d(lambda c: f[i, c], j, w) ** 2 + d(lambda r: f[r, j], i, h) ** 2) / 2)
               for i in range(h) for j in range(w)) / (h * w)


def mi_histogram(x, y):
    joint, _, _ = np.histogram2d(x.ravel(), y.ravel(), bins=256, range=[[0, 256], [0, 256]])
    p = joint / joint.sum()
    px, py = p.sum(1, keepdims=True), p.sum(0, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(p > 0, p * np.log(p / (px * py)), 0.0).sum()


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


def qabf_loop(f, a, b, equal_is_one):
    def edges(x):
        sx = convolve2d(x, [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], "same")
        sy = convolve2d(x, [[1, 2, 1], [0, 0, 0], [-1, -2, -1]], "same")
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.hypot(sx, sy), np.where(sx == 0, np.pi / 2, np.arctan(sy / sx))

    (gf, af), total, weight = edges(f), 0.0, 0.0
    for src in (a, b):
        gs, as_ = edges(src)
        for k in np.ndindex(gs.shape):
            if gs[k] == gf[k]:
                ratio = (1.0 if gs[k] > 0 else 0.0) if equal_is_one else gf[k]
            else:
                ratio = min(gs[k], gf[k]) / max(gs[k], gf[k])
            qg = 0.9994 / (1 + math.exp(-15 * (ratio - 0.5)))
            qa = 0.9879 / (1 + math.exp(-22 * (1 - abs(as_[k] - af[k]) / (np.pi / 2) - 0.8)))
            total += qg * qa * gs[k]
            weight += gs[k]
    return total / weight


def nabf_loop(f, a, b):
    """Kumar's N^AB/F pixel by pixel: Sobel / 8 on mirrored borders, Petrovic's constants."""
    def edges(x):
        p = np.pad(x, 1, mode="reflect")
        gh, gv = np.zeros(x.shape), np.zeros(x.shape)
        for i, j in np.ndindex(x.shape):
            w = p[i:i + 3, j:j + 3]
            gh[i, j] = (w[0] @ [1, 2, 1] - w[2] @ [1, 2, 1]) / 8
            gv[i, j] = (w[:, 2] @ [1, 2, 1] - w[:, 0] @ [1, 2, 1]) / 8
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.hypot(gh, gv), np.where((gh == 0) & (gv == 0), 0.0, np.arctan(gv / gh))

    (gf, af), (ga, aa), (gb, ab) = edges(f), edges(a), edges(b)
    loss = total = 0.0
    for k in np.ndindex(f.shape):
        q = []
        for gs, as_ in ((ga[k], aa[k]), (gb[k], ab[k])):
            ratio = 0.0 if gs == 0 or gf[k] == 0 else min(gs, gf[k]) / max(gs, gf[k])
            orient = abs(abs(as_ - af[k]) - np.pi / 2) * 2 / np.pi
            q.append(math.sqrt(0.9999 / (1 + math.exp(-19 * (ratio - 0.5))) * 0.9995 / (1 + math.exp(-22 * (orient - 0.5)))))
        wa, wb = (g ** 1.5 if g >= 2 else 0.0 for g in (ga[k], gb[k]))
        total += wa + wb
        if gf[k] > ga[k] and gf[k] > gb[k]:
            loss += (1 - q[0]) * wa + (1 - q[1]) * wb
    return loss / total


@pytest.fixture(scope="module")
def real_triple(msrs_det20):
    """A 72 x 70 crop of a real MSRS pair and a simple fusion of it, as grey levels."""
    import cv2
    ir = cv2.imread(str(msrs_det20 / "ir" / "00055D.png"), cv2.IMREAD_GRAYSCALE)[200:272, 300:370].astype(float)
    vi = cv2.imread(str(msrs_det20 / "vi" / "00055D.png"), cv2.IMREAD_GRAYSCALE)[200:272, 300:370].astype(float)
    return np.round(np.maximum(ir, vi) * 0.6 + vi * 0.4), ir, vi


def test_agreement_with_independent_implementations(real_triple):
    f, ir, vi = real_triple
    assert intensity.en(f, ir, vi, EXACT) == pytest.approx(entropy_loop(f), rel=1e-12)
    assert intensity.sf(f, ir, vi, EXACT) == pytest.approx(sf_loop(f), rel=1e-12)
    assert intensity.ag(f, ir, vi, EXACT) == pytest.approx(ag_loop(f), rel=1e-12)
    assert information.mi(f, ir, vi, EXACT) == pytest.approx(mi_histogram(f, ir) + mi_histogram(f, vi), rel=1e-10)
    cdd64 = CDDFUSE.__class__(**{**CDDFUSE.__dict__, "dtype": np.float64})
    assert structure.structural_similarity(f, ir, cdd64) == pytest.approx(ssim_windows(f, ir, 2.0), rel=1e-9)
    gaussian = skimage_ssim(f, ir, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert structure.structural_similarity(f, ir, EXACT) == pytest.approx(gaussian, rel=1e-9)
    assert vif.vif_p(ir, f) == pytest.approx(vif_convolve(ir, f), rel=1e-9)
    assert gradients.qabf(f, ir, vi, EXACT) == pytest.approx(qabf_loop(f, ir, vi, True), rel=1e-9)
    assert gradients.qabf(f, ir, vi, cdd64) == pytest.approx(qabf_loop(f, ir, vi, False), rel=1e-9)
    assert gradients.nabf(f, ir, vi, EXACT) == pytest.approx(nabf_loop(f, ir, vi), rel=1e-9)


# --- degenerate input: every metric -----------------------------------------------------------

SAME = {"MI": None, "NMI": 2.0, "CE": 0.0, "CC": 1.0, "VIF": 2.0, "Qabf": Q_PERFECT, "Nabf": 0.0,
        "SSIM": 2.0, "MS-SSIM": 2.0, "Qy": 1.0, "Qcb": 1.0, "Qcv": 0.0, "PSNR": math.inf, "MSE": 0.0,
        "RMSE": 0.0, "SCD": math.nan, "FMI_pixel": 1.0, "FMI_dct": 1.0, "FMI_w": 1.0}
"""F = IR = VI (a textured image)."""
FLAT_F = {"EN": 0.0, "SD": 0.0, "SF": 0.0, "AG": 0.0, "EI": 0.0, "MI": 0.0, "TE": 0.0, "CC": math.nan,
          "Qcb": math.nan, "Qcv": math.nan}
"""F flat, textured sources."""
ALL_FLAT = {"NMI": math.nan, "QNCIE": 1 - math.log(3, 256), "VIF": 2.0, "Qabf": math.nan, "Nabf": math.nan,
            "SCD": math.nan, "Qy": 1.0, "SSIM": 2.0}
"""F, IR and VI all 0 (a flat non-zero image has Qabf edges at its zero-padded border, as in the toolkits)."""


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_degenerate_input(name):
    cases = [(SAME, textured(7, (180, 180))), (FLAT_F, None), (ALL_FLAT, None)]
    covered = [table for table, _ in cases if name in table]
    assert covered, f"{name} has no degenerate case"
    x = textured(7, (180, 180))
    inputs = {id(SAME): (x, x, x), id(FLAT_F): (np.full_like(x, 77.0), x, textured(8, (180, 180))),
              id(ALL_FLAT): (np.zeros_like(x),) * 3}
    for table in covered:
        f, ir, vi = inputs[id(table)]
        value = evaluate(f, ir, vi, "exact", metrics=[name])[name]
        expected = table[name]
        if name == "MI" and table is SAME:
            expected = 2 * intensity.entropy_bits(x) * math.log(2)
        if isinstance(expected, float) and math.isnan(expected):
            assert math.isnan(value), (name, value)
        else:
            assert value == pytest.approx(expected, rel=1e-9, abs=1e-12), name


def test_small_images_down_to_each_metric_minimum():
    for size in (45, 20):
        f, ir, vi = textured(1, (size, size)), textured(2, (size, size)), textured(3, (size, size))
        values = evaluate(f, ir, vi, "exact")
        for name, value in values.items():
            assert math.isnan(value) == (size < REGISTRY[name].min_size), (name, size, value)
    assert REGISTRY["VIF"].min_size == 41 and vif.vif_p(textured(1, (41, 41)), textured(2, (41, 41))) > 0


# --- inputs -----------------------------------------------------------------------------------

def test_inputs_outside_the_convention_are_refused():
    x = textured(1)
    with pytest.raises(MetricInputError, match=r"fused image: values span \[\d+, 300\]"):
        evaluate(np.where(x > 200, 300.0, x), x, x, "exact")
    with pytest.raises(MetricInputError, match="fractional grey levels.*'cddfuse'"):
        evaluate(x + 0.5 * (x < 250), x, x, "cddfuse")
    assert not math.isnan(evaluate(x + 0.25, x, x, "exact", metrics=["EN"])["EN"])
    with pytest.raises(MetricInputError, match="NaN or infinite"):
        evaluate(np.where(x > 200, np.nan, x), x, x, "vifb")
    with pytest.raises(MetricInputError, match=r"\(H, W\) or \(H, W, 3\)"):
        evaluate(np.stack([x] * 4, axis=2), x, x)
    with pytest.raises(MetricInputError, match="same height and width"):
        evaluate(x, x[:-1], x)


def test_colour_handling_per_convention():
    rgb = np.stack([textured(1), textured(2), textured(3)], axis=2)
    ir = textured(4)
    # cddfuse: OpenCV float32 BT.601 grey, rounded half to even
    grey = evaluate(rgb, ir, ir, "cddfuse", metrics=["SD"])["SD"]
    import cv2
    expected = np.round(cv2.cvtColor(rgb[..., ::-1].astype(np.float32), cv2.COLOR_BGR2GRAY))
    assert grey == pytest.approx(float(np.std(expected.astype(np.float32))), rel=1e-6)
    # vifb: per channel, the grey IR used for every channel, values averaged
    per_channel = evaluate(rgb, ir, ir, "vifb", metrics=["SD", "SSIM"])
    assert per_channel["SD"] == pytest.approx(np.mean([np.std(rgb[..., k]) for k in range(3)]))
    ssims = [evaluate(rgb[..., k], ir, ir, "vifb", metrics=["SSIM"])["SSIM"] for k in range(3)]
    assert per_channel["SSIM"] == pytest.approx(np.mean(ssims))


def test_config_key_lists_the_conventions():
    from typing import get_args

    from pipelines.schema import MetricsSection

    assert set(get_args(MetricsSection.model_fields["convention"].annotation)) == set(CONVENTIONS)
    assert MetricsSection().convention == "cddfuse"


# --- FMI: Fast-FMI against a float64 loop written from fmi.m ---------------------------------------

def _nmi_loop(s: list[float], f: list[float]) -> float:
    """One window of fmi.m, element by element: normalise, PDFs, CDFs, Nelsen's joint PDF, 2 I / (Hs + Hf)."""
    def norm(v):
        lo, hi = min(v), max(v)
        return [1.0] * len(v) if hi == lo else [(x - lo) / (hi - lo) for x in v]
    s, f = norm(s), norm(f)
    ps, pf = [x / sum(s) for x in s], [x / sum(f) for x in f]
    cs, cf = list(np.cumsum(ps)), list(np.cumsum(pf))
    n = len(ps)
    ms, mf = sum(s) / n, sum(f) / n  # r of the PDFs = r of the normalised values (exact 0 when flat)
    num = sum((a - ms) * (b - mf) for a, b in zip(s, f))
    c = 0.0 if num == 0 else num / math.sqrt(sum((a - ms) ** 2 for a in s) * sum((b - mf) ** 2 for b in f))
    def sd(p):
        return math.sqrt(max(sum((i + 1) ** 2 * p[i] for i in range(n)) - sum((i + 1) * p[i] for i in range(n)) ** 2, 0))
    ss, sf_ = sd(ps), sd(pf)
    if c >= 0:
        def bound(i, j):
            return 0.0 if i < 0 or j < 0 else min(cf[i], cs[j])
    else:
        def bound(i, j):
            return 0.0 if i < 0 or j < 0 else max(cf[i] + cs[j] - 1, 0.0)
    if (c >= 0 and c == 0) or ss == 0 or sf_ == 0:
        k = 0.0
    else:
        cov = sum(bound(i, j) - cf[i] * cs[j] for i in range(n) for j in range(n))
        k = c / (cov / (sf_ * ss))
    joint = 0.0
    for i in range(n):
        for j in range(n):
            mass = bound(i, j) - bound(i - 1, j) - bound(i, j - 1) + bound(i - 1, j - 1)
            p = k * mass + (1 - k) * pf[i] * ps[j]
            if p != 0:
                joint -= p * math.log2(abs(p))
    hs = -sum(p * math.log2(p) for p in ps if p > 0)
    hf = -sum(p * math.log2(p) for p in pf if p > 0)
    mi = hs + hf - joint
    return 0.0 if mi == 0 else 2 * mi / (hs + hf)


def fmi_loop(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    values = []
    for p in range(1, a.shape[0] - 1):
        for q in range(1, a.shape[1] - 1):
            wa, wb, wf = (x[p - 1:p + 2, q - 1:q + 2].T.ravel().tolist() for x in (a, b, f))
            if wa == wf:
                af = 1.0
            else:
                af = _nmi_loop(wa, wf)
                lo, hi = min(wf), max(wf)  # fmi.m compares B with F as normalised in the A branch
                wf = [1.0] * 9 if hi == lo else [(x - lo) / (hi - lo) for x in wf]
            bf = 1.0 if wb == wf else _nmi_loop(wb, wf)
            values.append((af + bf) / 2)
    return float(np.mean(values))


def test_fmi_against_a_loop_over_windows():
    from scipy.fft import dctn

    rng = np.random.default_rng(5)
    ir, vi = textured(11, (9, 8)), textured(12, (9, 8))
    f = np.round(0.5 * ir + 0.5 * vi)
    f[:3, :3] = ir[:3, :3]  # windows equal to IR's (score 1), and a flat patch (ones after normalising)
    f[5:, :4], vi[5:, :4] = 40.0, 90.0
    for a, b, x in ((ir, vi, f), (ir, vi, rng.uniform(0, 255, ir.shape))):
        assert feature_mi.fmi_pixel(x, a, b, EXACT) == pytest.approx(fmi_loop(a, b, x), rel=1e-12)
        dct = [dctn(y, norm="ortho") for y in (a, b, x)]
        assert feature_mi.fmi_dct(x, a, b, EXACT) == pytest.approx(fmi_loop(*dct), rel=1e-12)
    # negative correlations of the window PDFs take Frechet's lower bound: covered above, and alone
    down, up = np.arange(9.0).reshape(3, 3).T, 8 - np.arange(9.0).reshape(3, 3).T
    assert _nmi_loop(down.T.ravel().tolist(), up.T.ravel().tolist()) == pytest.approx(
        feature_mi.window_nmi(down.T.ravel(), up.T.ravel()), rel=1e-12)
    assert feature_mi.fmi_pixel(up, down, down, EXACT) == pytest.approx(fmi_loop(down, down, up))


def test_fmi_window_merge_walk_against_the_81_cell_loop():
    """The O(9 + 9) window computation (merge walk for the bound's covariance and support, closed
    form off the support) against fmi.m's 81-cell loop, on windows of every kind: continuous, tied
    integers with several zero PDF entries, spanning decades, negatively correlated, equal, flat,
    and PDFs with all mass on one position."""
    rng = np.random.default_rng(8)
    windows = [(np.full(9, 3.0), rng.uniform(0, 1, 9)), (rng.uniform(0, 1, 9), np.full(9, 2.0)),
               (np.full(9, 1.0), np.full(9, 5.0)), (np.eye(9)[4], np.eye(9)[2]), (np.eye(9)[4], 2 - np.eye(9)[4])]
    for _ in range(150):
        s = rng.uniform(0, 1, 9)
        ties = rng.integers(0, 3, 9).astype(float)
        windows += [(s, rng.uniform(0, 1, 9)), (ties, rng.integers(0, 4, 9).astype(float)), (ties, 2 - ties),
                    (s, 1 - s + rng.normal(0, 0.05, 9)), (rng.lognormal(0, 3, 9), rng.lognormal(0, 3, 9)),
                    (s, s.copy()), (np.eye(9)[rng.integers(9)], s)]
    negative = sum(np.corrcoef(s, f)[0, 1] < 0 for s, f in windows if s.std() > 0 and f.std() > 0)
    assert negative > 300  # the lower bound's walk is exercised as much as the upper's
    for s, f in windows:
        assert feature_mi.window_nmi(s, f) == pytest.approx(_nmi_loop(s.tolist(), f.tolist()), rel=1e-12, abs=1e-12)


def test_fmi_over_several_blocks_of_windows_and_from_threads():
    """More windows than one block of the kernels (912: a full block, then a short one, the block
    edge in mid-row) against the loop over windows, with equal and flat windows and negative
    correlations; and the same values from four threads at once (the metrics stage's threads)."""
    from concurrent.futures import ThreadPoolExecutor

    ir, vi = textured(21, (26, 40)), textured(22, (26, 40))
    f = np.round(0.5 * ir + 0.5 * vi)
    f[10:16, 5:20] = ir[10:16, 5:20]
    f[:6, 30:], vi[:6, 30:] = 7.0, 200.0
    f[18:, :12] = 255 - vi[18:, :12]
    assert (f.shape[0] - 2) * (f.shape[1] - 2) > feature_mi._BLOCK
    expected = fmi_loop(ir, vi, f)
    assert feature_mi.fmi_pixel(f, ir, vi, EXACT) == pytest.approx(expected, rel=1e-12)
    triples = [(f, ir, vi), (ir, vi, f), (vi, f, ir), (f, vi, ir)] * 2
    serial = [feature_mi.fmi_pixel(*t, EXACT) for t in triples]
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(lambda t: feature_mi.fmi_pixel(*t, EXACT), triples)) == serial


def test_fmi_wavelet_feature_is_the_reranged_dmey_tiling():
    import pywt

    a, b, f = textured(1, (12, 10)), textured(2, (12, 10)), textured(3, (12, 10))
    def tiled(x):
        c_a, (c_h, c_v, c_d) = pywt.dwt2(x, "dmey", mode="symmetric")
        t = np.block([[c_a, c_h], [c_v, c_d]])
        return (t - t.min()) / (t.max() - t.min())
    assert tiled(a).shape == (2 * ((12 + 61) // 2), 2 * ((10 + 61) // 2))
    assert feature_mi.fmi_w(f, a, b, EXACT) == pytest.approx(fmi_loop(tiled(a), tiled(b), tiled(f)), rel=1e-12)


# --- the ivif_zoo and tang conventions --------------------------------------------------------

def test_ivif_zoo_and_tang_choices():
    ir = np.array([[0.0, 255.0], [0.0, 255.0]])
    flat = np.full((2, 2), 9.0)
    assert evaluate(ir, ir, flat, "ivif_zoo", metrics=["MI"])["MI"] == pytest.approx(1.0)  # bits
    assert evaluate(ir, ir, flat, "cddfuse", metrics=["MI"])["MI"] == pytest.approx(math.log(2))  # nats
    ramp = np.array([[0.0, 1.0], [2.0, 3.0]])
    assert evaluate(ramp, ramp, ramp, "tang", metrics=["AG"])["AG"] == pytest.approx(4 * math.sqrt(2.5))  # (r-1)(c-1)
    assert evaluate(ramp, ramp, ramp, "ivif_zoo", metrics=["AG"])["AG"] == pytest.approx(math.sqrt(2.5))
    # grey conversion: Pillow's fixed point vs MATLAB rgb2gray, on colours where they differ
    rgb = np.array([[[177.0, 10.0, 208.0], [232.0, 240.0, 11.0], [41.0, 48.0, 176.0], [13.0, 200.0, 7.0]]])
    from PIL import Image
    pil = np.asarray(Image.fromarray(rgb.astype(np.uint8)).convert("L"), dtype=np.float64)
    matlab = np.floor(rgb @ np.array([0.298936021293775, 0.587043074451121, 0.114020904255103]) + 0.5)
    assert (pil != matlab).sum() == 3
    for name, grey in (("ivif_zoo", pil), ("tang", matlab)):
        triple = images.grey_triples(rgb, rgb, rgb, get_convention(name))[0]
        assert np.array_equal(triple[0], grey), name
    # tang's Qabf works on im2double images: G = g_F at equal strengths is then on a [0, 1] scale
    a, b = textured(1, (20, 20)), textured(2, (20, 20))
    assert evaluate(a, a, b, "tang", metrics=["Qabf"])["Qabf"] == pytest.approx(
        gradients.qabf(a / 255, a / 255, b / 255, get_convention("cddfuse")), rel=1e-9)
    assert "FMI_dct" in CONVENTIONS["tang"].metrics and "FMI_pixel" not in CONVENTIONS["tang"].metrics


# --- the fast paths: same numbers as the direct definitions -----------------------------------

def test_gaussian_taps_are_fspecial_separated():
    from fusion.metrics.windows import filter_valid, gaussian_taps

    for size, sigma in ((17, 3.4), (9, 1.8), (5, 1.0), (3, 0.6), (11, 1.5), (7, 1.5)):  # VIF, SSIM, Qy
        r = (size - 1) / 2
        y, x = np.mgrid[-r:r + 1, -r:r + 1]
        h = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
        h[h < np.finfo(float).eps * h.max()] = 0
        taps = gaussian_taps(size, sigma)
        assert np.outer(taps, taps) == pytest.approx(h / h.sum(), rel=1e-13, abs=1e-17)
    image = textured(4, (30, 26))
    window = np.outer(taps, taps)
    loop = [[float((image[i:i + 7, j:j + 7] * window).sum()) for j in range(20)] for i in range(24)]
    assert filter_valid(image, taps) == pytest.approx(np.array(loop), rel=1e-13)
    with pytest.raises(ValueError, match="not separable"):
        gaussian_taps(31, 1.0)


def test_qabf_sobel_is_convolve2d_bit_for_bit():
    """The Qabf quirk compares strengths for equality: the Sobel sums must round as conv2 does."""
    x = textured(6, (40, 33)) / 255
    for kernel in (gradients._SOBEL_X, gradients._SOBEL_Y):
        assert np.array_equal(gradients._convolve_same(np.pad(x, 1), kernel), convolve2d(x, kernel, mode="same"))


def test_qy_against_a_loop_with_flat_sources():
    """Against a loop over 7x7 windows: where IR and VI are both flat (different constants), l = 0.5."""
    ir, vi = textured(7, (26, 24)), textured(8, (26, 24))
    ir[:12, :12], vi[:12, :12] = 57.0, 64.0  # E[x^2] - E[x]^2 rounds to +1e-12 there, not 0
    f = np.round(0.6 * ir + 0.4 * vi)
    f[:12, :12] = 120.0
    taps = np.exp(-np.arange(-3, 4) ** 2 / 4.5)
    w = np.outer(taps, taps) / np.outer(taps, taps).sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def stats(x, y):
        mx, my = (w * x).sum(), (w * y).sum()
        vx, vy = (w * (x - mx) ** 2).sum(), (w * (y - my) ** 2).sum()
        cov = (w * (x - mx) * (y - my)).sum()
        return (2 * mx * my + c1) * (2 * cov + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2)), vx, vy

    values = []
    for i in range(20):
        for j in range(18):
            a, b, x = (z[i:i + 7, j:j + 7] for z in (ir, vi, f))
            s_ab, v_a, v_b = stats(a, b)
            s_af, s_bf = stats(a, x)[0], stats(b, x)[0]
            flat = np.ptp(a) == 0 and np.ptp(b) == 0
            lam = 0.5 if flat else v_a / (v_a + v_b)
            values.append(lam * s_af + (1 - lam) * s_bf if s_ab >= 0.75 else max(s_af, s_bf))
    assert structure.qy(f, ir, vi, EXACT) == pytest.approx(float(np.mean(values)), rel=1e-12)
