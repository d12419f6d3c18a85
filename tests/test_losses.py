"""S4Fusion loss terms against hand-computed values, SSIM against scikit-image, and the adaptive weights."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from fusion.perception import build_resnet50
from fusion.s4fusion.losses import (
    FusionLoss,
    LossSettings,
    adaptive_weights,
    gradient_loss,
    perception_loss,
    ssim,
    weighted_l1_loss,
    weighted_ssim_loss,
)


@pytest.fixture(scope="module")
def resnet() -> torch.nn.Module:
    return build_resnet50(allow_random=True)[0]


def step_image(size: int = 4) -> torch.Tensor:
    image = torch.zeros(1, 1, size, size)
    image[..., size // 2:] = 1.0
    return image


def test_gradient_loss_hand_computed():
    # A vertical 0 -> 1 step in a 4x4 image: Sobel-x is 1 + 2 + 1 = 4 on the two columns beside the
    # step and 0 elsewhere (replicate padding), so |grad I| has mean 4 * 8 / 16 = 2.
    zeros = torch.zeros(1, 1, 4, 4)
    assert gradient_loss(zeros, step_image(), zeros).item() == pytest.approx(2.0)
    assert gradient_loss(zeros, zeros, step_image()).item() == pytest.approx(2.0)
    assert gradient_loss(step_image(), step_image(), zeros).item() == pytest.approx(0.0)
    # The transposed step counts the same through Sobel-y; F = half the step misses half the gradient.
    assert gradient_loss(zeros, step_image().transpose(2, 3), zeros).item() == pytest.approx(2.0)
    assert gradient_loss(0.5 * step_image(), step_image(), zeros).item() == pytest.approx(1.0)


def test_weighted_l1_hand_computed():
    fused, ir, vi = torch.full((2, 1, 3, 3), 0.2), torch.ones(2, 1, 3, 3), torch.zeros(2, 1, 3, 3)
    w_ir, w_vi = torch.tensor([0.25, 1.0]), torch.tensor([0.75, 0.0])
    # image 0: 0.25 * 0.8 + 0.75 * 0.2 = 0.35; image 1: 1.0 * 0.8 = 0.8; batch mean 0.575
    assert weighted_l1_loss(fused, ir, vi, w_ir, w_vi).item() == pytest.approx(0.575)


def test_ssim_of_constant_images_hand_computed():
    a, b, c1 = 0.2, 0.6, 0.01**2
    x = torch.full((1, 1, 13, 13), a, dtype=torch.float64)  # float64: E[x^2] - mu^2 cancels exactly
    y = torch.full((1, 1, 13, 13), b, dtype=torch.float64)
    expected = (2 * a * b + c1) / (a * a + b * b + c1)  # no variance: the structure term is c2 / c2
    assert ssim(x, y).item() == pytest.approx(expected, rel=1e-5)
    assert ssim(x, x).item() == pytest.approx(1.0, abs=1e-6)
    w = torch.tensor([0.25], dtype=torch.float64), torch.tensor([0.75], dtype=torch.float64)
    assert weighted_ssim_loss(x, x, y, *w).item() == pytest.approx(0.75 * (1 - expected), rel=1e-5)


def test_ssim_matches_scikit_image():
    rng = np.random.default_rng(0)
    x = rng.random((32, 40)).astype(np.float32)
    y = np.clip(x + 0.2 * rng.standard_normal(x.shape), 0, 1).astype(np.float32)
    reference = structural_similarity(x, y, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                      use_sample_covariance=False)
    ours = ssim(torch.from_numpy(x)[None, None], torch.from_numpy(y)[None, None]).item()
    assert ours == pytest.approx(reference, abs=1e-5)


def test_perception_loss_hand_computed():
    # Constant logits (0, ln 3) -> p = (1/4, 3/4) -> entropy ln 4 - (3/4) ln 3 for every image.
    linear = torch.nn.Linear(3, 2)
    torch.nn.init.zeros_(linear.weight)
    linear.bias.data = torch.tensor([0.0, math.log(3.0)])
    network = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), linear)
    value = perception_loss(network, torch.rand(3, 1, 8, 8)).item()
    assert value == pytest.approx(math.log(4.0) - 0.75 * math.log(3.0), rel=1e-6)


def test_gradients_reach_the_model_not_the_frozen_resnet(resnet):
    torch.manual_seed(0)
    model = torch.nn.Conv2d(2, 1, 3, padding=1)
    ir, vi = torch.rand(2, 1, 49, 49), torch.rand(2, 1, 49, 49)
    terms = FusionLoss(resnet)(torch.sigmoid(model(torch.cat([ir, vi], dim=1))), ir, vi)
    terms["total"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    assert all(p.grad is None and not p.requires_grad for p in resnet.parameters())
    # Each term is a positive scalar and the total is their weighted sum (paper weights 1, 15, 15, 15).
    parts = {k: terms[k].item() for k in ("per", "l1", "ssim", "grad")}
    assert all(v > 0 for v in parts.values())
    expected = parts["per"] + 15 * (parts["l1"] + parts["ssim"] + parts["grad"])
    assert terms["total"].item() == pytest.approx(expected, rel=1e-5)


def test_without_perception_term(resnet):
    ir, vi = torch.rand(1, 1, 49, 49), torch.rand(1, 1, 49, 49)
    fused = ((ir + vi) / 2).requires_grad_(True)
    terms = FusionLoss(resnet, LossSettings(per=0.0))(fused, ir, vi)
    assert terms["per"].item() == 0.0
    assert terms["total"].item() == pytest.approx(15 * (terms["l1"] + terms["ssim"] + terms["grad"]).item(), rel=1e-5)


def test_adaptive_weights_favour_the_structured_modality(resnet):
    size = 49
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    textured = (((yy // 3) + (xx // 3)) % 2).float().view(1, 1, size, size) * 0.8 + 0.1  # checkerboard
    smooth = (xx.float() / (size - 1)).view(1, 1, size, size) * 0.2 + 0.4  # faint ramp
    w_ir, w_vi = adaptive_weights(resnet, textured, smooth)
    assert w_ir.item() + w_vi.item() == pytest.approx(1.0, abs=1e-6)
    assert w_ir.item() > 0.6 > w_vi.item()
    swapped = adaptive_weights(resnet, smooth, textured)
    assert swapped[1].item() == pytest.approx(w_ir.item(), abs=1e-5)  # symmetric in the modalities
    sharper = adaptive_weights(resnet, textured, smooth, temperature=0.25)
    assert sharper[0].item() > w_ir.item()
    with pytest.raises(ValueError, match="stages"):
        adaptive_weights(resnet, textured, smooth, stages=("layer9",))


def test_adaptive_weights_are_float32_under_a_bf16_autocast(resnet):
    """Issue #14: the trainer's autocast ran the weights' feature measures in bf16."""
    generator = torch.Generator().manual_seed(0)
    ir, vi = torch.rand(2, 1, 32, 32, generator=generator), torch.rand(2, 1, 32, 32, generator=generator).pow(3)
    reference = adaptive_weights(resnet, ir, vi)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = adaptive_weights(resnet, ir, vi)
        terms = FusionLoss(resnet, LossSettings(per=0.0))((ir + vi) / 2, ir, vi)
    for expected, got in zip(reference, under_autocast):
        assert got.dtype == torch.float32 and torch.equal(got, expected)
    assert torch.equal(terms["w_ir"], reference[0])
