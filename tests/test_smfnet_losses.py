"""SMFNet's loss terms against float64 references written out pixel by pixel (numpy), and each
preset's weights against the formulas of ../shared/SMFNET.md."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fusion.smfnet import losses
from fusion.smfnet.encoder import EncoderFeatures
from fusion.smfnet.model import Fusion, Reconstruction

SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64)


def images(seed: int, shape=(2, 1, 12, 13)) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def correlate(padded: np.ndarray, kernel: np.ndarray, h: int, w: int) -> np.ndarray:
    k = kernel.shape[0]
    out = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            out[i, j] = (padded[i:i + k, j:j + k] * kernel).sum()
    return out


def test_sobel_magnitude_zero_padding():
    x = images(0)
    ref = np.zeros(x.shape)
    for b in range(2):
        padded = np.pad(x[b, 0].numpy(), 1)
        ref[b, 0] = np.abs(correlate(padded, SOBEL_X, 12, 13)) + np.abs(correlate(padded, SOBEL_X.T, 12, 13))
    np.testing.assert_allclose(losses.sobel_magnitude(x).numpy(), ref, atol=1e-12)


def test_spatial_gradient_is_sobel_over_8_with_replicate_padding():
    x = images(1)
    got = losses.spatial_gradient(x).numpy()
    for b in range(2):
        padded = np.pad(x[b, 0].numpy(), 1, mode="edge")
        np.testing.assert_allclose(got[b, 0, 0], correlate(padded, SOBEL_X / 8, 12, 13), atol=1e-12)
        np.testing.assert_allclose(got[b, 0, 1], correlate(padded, SOBEL_X.T / 8, 12, 13), atol=1e-12)


def ssim_reference(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    coords = np.arange(11) - 5.0
    g = np.exp(-coords**2 / (2 * 1.5**2))
    g /= g.sum()
    window = np.outer(g, g)
    px, py = np.pad(x, 5, mode="reflect"), np.pad(y, 5, mode="reflect")
    out = np.zeros(x.shape)
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            a, b = px[i:i + 11, j:j + 11], py[i:i + 11, j:j + 11]
            mx, my = (window * a).sum(), (window * b).sum()
            vx, vy = (window * a * a).sum() - mx**2, (window * b * b).sum() - my**2
            cov = (window * a * b).sum() - mx * my
            out[i, j] = ((2 * mx * my + 1e-4) * (2 * cov + 9e-4)) / ((mx**2 + my**2 + 1e-4) * (vx + vy + 9e-4))
    return out


def test_ssim_map_and_both_ssim_losses():
    x, y = images(2), images(3)
    y = 0.7 * x + 0.3 * y  # related images: SSIM well inside (0, 1)
    ref = np.stack([ssim_reference(x[b, 0].numpy(), y[b, 0].numpy()) for b in range(2)])[:, None]
    np.testing.assert_allclose(losses.ssim_map(x, y).numpy(), ref, atol=1e-10)
    assert losses.ssim_loss(x, y, released=False).item() == pytest.approx(1 - ref.mean(), abs=1e-10)
    assert losses.ssim_loss(x, y, released=True).item() == pytest.approx(np.clip(1 - ref, 0, 1).mean() / 2, abs=1e-10)


def test_correlation_paper_per_sample_and_channel_released_whole_tensor():
    a = images(4, (2, 3, 5, 6))
    b = 0.5 * a + images(5, (2, 3, 5, 6))
    per_map = [np.corrcoef(a[n, c].numpy().ravel(), b[n, c].numpy().ravel())[0, 1] for n in range(2) for c in range(3)]
    assert losses.correlation(a, b, released=False).item() == pytest.approx(np.mean(per_map), abs=1e-6)  # the eps in the denominator
    whole = np.corrcoef(a.numpy().ravel(), b.numpy().ravel())[0, 1]
    assert losses.correlation(a, b, released=True).item() == pytest.approx(whole, abs=1e-6)
    a.requires_grad_(True)
    assert losses.correlation(a, b, released=False).requires_grad
    assert not losses.correlation(a, b, released=True).requires_grad  # the release's .item()


def test_gram_term_is_mse_of_mean_squares():
    x, y = images(6), images(7)
    ref = np.mean([((x[b] ** 2).mean().item() - (y[b] ** 2).mean().item()) ** 2 for b in range(2)])
    assert losses.gram_loss(x, y).item() == pytest.approx(ref, abs=1e-14)


def lovasz_softmax_reference(probas: np.ndarray, labels: np.ndarray) -> float:
    """Berman et al.'s Lovasz-Softmax ('present' classes), written out for (P, C) probabilities."""
    values = []
    for c in range(probas.shape[1]):
        fg = (labels == c).astype(np.float64)
        if fg.sum() == 0:
            continue
        errors = np.abs(fg - probas[:, c])
        order = np.argsort(-errors, kind="stable")
        gt = fg[order]
        jaccard = np.empty(len(gt))
        for k in range(len(gt)):
            intersection = gt.sum() - gt[: k + 1].sum()
            union = gt.sum() + (1 - gt[: k + 1]).sum()
            jaccard[k] = 1 - intersection / union
        grad = np.concatenate([jaccard[:1], np.diff(jaccard)])
        values.append(float(errors[order] @ grad))
    return float(np.mean(values)) if values else 0.0


def test_lovasz_term_matches_the_algorithm_on_a_one_channel_softmax():
    labels = images(8).float()
    labels[0, 0, :3, :4] = 0  # some pixels exactly 0: class 0 is present
    ones = np.ones((labels.numel(), 1))  # softmax over one channel
    expected = lovasz_softmax_reference(ones, labels.numpy().ravel())
    assert losses.lovasz_constant(labels).item() == pytest.approx(expected, abs=1e-7)
    assert expected == pytest.approx(1 - 12 / labels.numel())
    assert losses.lovasz_constant(labels + 0.5).item() == 0.0 == lovasz_softmax_reference(
        ones, (labels + 0.5).numpy().ravel())


def features(seed: int) -> EncoderFeatures:
    return EncoderFeatures(images(seed, (2, 4, 6, 7)), images(seed + 1, (2, 4, 6, 7)), images(seed + 2, (2, 4, 6, 7)))


class Fixed(torch.nn.Module):
    """A stand-in network returning given stage outputs, so the objective's sums can be checked."""

    def __init__(self, outputs):
        super().__init__()
        self.outputs = outputs

    def forward(self, ir, vi, stage):
        return self.outputs[stage]


@pytest.mark.parametrize("preset", ["paper", "released"])
def test_stage_totals_weight_the_terms_as_specified(preset):
    ir, vi = images(10), images(11)
    vi[0, 0, 0, 0] = 0.0
    f_ir, f_vi = features(20), features(30)
    g_ir, g_vi = images(40, (2, 4, 6, 7)), images(41, (2, 4, 6, 7))
    ir_hat, vi_hat, fused = images(12), images(13), images(14)
    net = Fixed({"reconstruction": Reconstruction(ir_hat, vi_hat, f_ir, f_vi, g_ir, g_vi),
                 "fusion": Fusion(fused, f_ir, f_vi, g_ir, g_vi)})
    objective = losses.SMFNetObjective(losses.SMFNetLoss(preset))
    released = preset == "released"
    cc = lambda a, b: losses.correlation(a, b, released).item()
    grad = lambda t: losses.sobel_magnitude(t).numpy()

    one = objective(net, ir, vi, "reconstruction")
    decomposition = cc(f_vi.detail, f_ir.detail) ** 2 / (1.01 + cc(f_vi.base, f_ir.base))
    expected = (8 * losses.ssim_loss(vi, vi_hat, released).item() + losses.lovasz_constant(vi).item()
                + 10 * np.abs(grad(vi) - grad(vi_hat)).mean()
                + 8 * losses.ssim_loss(ir, ir_hat, released).item() + losses.gram_loss(ir, ir_hat).item()
                + 10 * np.abs(grad(ir) - grad(ir_hat)).mean()
                + 2 * decomposition
                + 5 * np.abs(losses.spatial_gradient(vi).numpy() - losses.spatial_gradient(vi_hat).numpy()).mean())
    assert one["total"].item() == pytest.approx(expected, rel=1e-12)
    assert list(one)[0] == "total"

    two = objective(net, ir, vi, "fusion")
    cc_second = cc(f_vi.detail, f_ir.detail) if released else cc(g_ir, g_vi)
    decomposition = (cc(f_vi.detail, f_ir.detail) ** 2 + cc_second**2) / (1.01 + cc(f_vi.base, f_ir.base))
    w_grad, w_dec = (10, 2) if released else (2, 10)
    expected = (np.abs(fused.numpy() - np.maximum(vi.numpy(), ir.numpy())).mean()
                + w_grad * np.abs(grad(fused) - np.maximum(grad(vi), grad(ir))).mean() + w_dec * decomposition)
    assert two["total"].item() == pytest.approx(expected, rel=1e-12)


def test_unknown_preset_and_stage_are_refused():
    with pytest.raises(ValueError, match="preset"):
        losses.SMFNetLoss("cddfuse")
    with pytest.raises(ValueError, match="stages"):
        losses.SMFNetObjective()(Fixed({}), images(0), images(1), "warmup")
