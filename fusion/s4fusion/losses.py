"""S4Fusion's training loss (paper Sec. III-D):

    L_total = w_per * L_per + w_l1 * L_L1 + w_ssim * L_ssim + w_grad * L_grad     (paper: 1, 15, 15, 15)

- L_per: entropy of softmax(ResNet50(F)) over the 1000 ImageNet classes, averaged over the batch.
- L_L1, L_ssim: the source images weighted by U2Fusion-style adaptive weights w_ir + w_vi = 1.
- L_grad: || |Sobel(F)| - max(|Sobel(I)|, |Sobel(V)|) ||_1.

Adaptive weights. The paper measures "the amount of information" of I and V with a frozen ResNet50
but gives neither the layers nor the temperature. As in U2Fusion, the information of an image is the
mean squared (Sobel) gradient of its feature maps. Defaults, both configurable:
- stages ("stem", "layer1", "layer2"): the shallow stages keep enough spatial resolution for gradients
  to mean texture and structure (U2Fusion also uses the shallow-to-middle layers of VGG16), and they
  are cheap, since only a part of the network runs on I and V.
- Feature magnitudes differ by orders of magnitude between stages and between ImageNet and random
  weights, so each stage's measure is divided by the mean of the two modalities' measures before the
  stages are averaged. The measures (g_ir, g_vi) then sum to 2, and w = softmax((g_ir, g_vi) / T) with
  temperature T = 1 gives weights between 0.12 and 0.88: the modality with more structure dominates
  without the other being ignored, whatever the network's scale.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fusion.perception import decision_entropy, to_imagenet_input

RESNET_STAGES = ("stem", "layer1", "layer2", "layer3", "layer4")
SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))


def sobel(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Horizontal and vertical Sobel responses of every channel of (B, C, H, W), same size
    (replicate padding, so the image border is not an edge)."""
    batch, channels, height, width = images.shape
    kx = images.new_tensor(SOBEL_X)
    kernel = torch.stack([kx, kx.t()]).unsqueeze(1)  # (2, 1, 3, 3): d/dx, d/dy
    flat = F.pad(images.reshape(batch * channels, 1, height, width), (1, 1, 1, 1), mode="replicate")
    response = F.conv2d(flat, kernel).reshape(batch, channels, 2, height, width)
    return response[:, :, 0], response[:, :, 1]


def gradient_magnitude(images: torch.Tensor) -> torch.Tensor:
    """|grad| as |Sobel_x| + |Sobel_y| (the L1 form used by SeAFusion-style gradient losses)."""
    gx, gy = sobel(images)
    return gx.abs() + gy.abs()


def gradient_loss(fused: torch.Tensor, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between |grad F| and the stronger source gradient per pixel."""
    target = torch.maximum(gradient_magnitude(ir), gradient_magnitude(vi))
    return (gradient_magnitude(fused) - target).abs().mean()


def gaussian_window(size: int = 11, sigma: float = 1.5, device=None, dtype=torch.float32) -> torch.Tensor:
    coords = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-image SSIM (Wang et al. 2004) of (B, 1, H, W) in [0, 1]: Gaussian window 11 / sigma 1.5,
    data range 1, K1 = 0.01, K2 = 0.03, averaged over the valid (unpadded) positions."""
    c1, c2 = 0.01**2, 0.03**2
    g = gaussian_window(window, sigma, x.device, x.dtype)
    channels = x.shape[1]

    def blur(t: torch.Tensor) -> torch.Tensor:
        t = F.conv2d(t, g.view(1, 1, 1, -1).expand(channels, 1, 1, window), groups=channels)
        return F.conv2d(t, g.view(1, 1, -1, 1).expand(channels, 1, window, 1), groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return index.flatten(1).mean(dim=1)


def weighted_l1_loss(fused, ir, vi, w_ir: torch.Tensor, w_vi: torch.Tensor) -> torch.Tensor:
    """Batch mean of w_ir * mean|F - I| + w_vi * mean|F - V| (weights per image, shape (B,))."""
    l1_ir = (fused - ir).abs().flatten(1).mean(dim=1)
    l1_vi = (fused - vi).abs().flatten(1).mean(dim=1)
    return (w_ir * l1_ir + w_vi * l1_vi).mean()


def weighted_ssim_loss(fused, ir, vi, w_ir: torch.Tensor, w_vi: torch.Tensor) -> torch.Tensor:
    """Batch mean of w_ir * (1 - SSIM(F, I)) + w_vi * (1 - SSIM(F, V))."""
    return (w_ir * (1 - ssim(fused, ir)) + w_vi * (1 - ssim(fused, vi))).mean()


def perception_loss(network: torch.nn.Module, fused: torch.Tensor) -> torch.Tensor:
    """L_per: batch mean of the decision-layer entropy of the frozen network (differentiable in F)."""
    return decision_entropy(network, fused).mean()


def resnet_features(network: torch.nn.Module, grey: torch.Tensor, stages: tuple[str, ...]) -> list[torch.Tensor]:
    """Feature maps of a torchvision ResNet at the named stages, running the network only as far as needed."""
    unknown = set(stages) - set(RESNET_STAGES)
    if unknown or not stages:
        raise ValueError(f"adaptive-weight stages {sorted(unknown) or '[]'}: expected some of {RESNET_STAGES}")
    x = to_imagenet_input(grey)
    x = network.relu(network.bn1(network.conv1(x)))
    features = {"stem": x}
    last = max(RESNET_STAGES.index(s) for s in stages)
    x = network.maxpool(x)
    for name in RESNET_STAGES[1 : last + 1]:
        x = getattr(network, name)(x)
        features[name] = x
    return [features[s] for s in stages]


def information_measures(network: torch.nn.Module, ir: torch.Tensor, vi: torch.Tensor,
                         stages: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """(g_ir, g_vi) per image: mean squared Sobel gradient of the feature maps, each stage normalised by
    the mean of the two modalities (scale-free), averaged over stages; g_ir + g_vi = 2."""
    g_ir, g_vi = [], []
    for f_ir, f_vi in zip(resnet_features(network, ir, stages), resnet_features(network, vi, stages)):
        energy = [sum(g.pow(2) for g in sobel(f.float())).flatten(1).mean(dim=1) for f in (f_ir, f_vi)]
        scale = (energy[0] + energy[1]) / 2 + 1e-12
        g_ir.append(energy[0] / scale)
        g_vi.append(energy[1] / scale)
    return torch.stack(g_ir).mean(dim=0), torch.stack(g_vi).mean(dim=0)


def adaptive_weights(network: torch.nn.Module, ir: torch.Tensor, vi: torch.Tensor,
                     stages: tuple[str, ...] = ("stem", "layer1", "layer2"),
                     temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """U2Fusion-style (w_ir, w_vi) per image, w_ir + w_vi = 1, from the frozen network (no gradient).

    Always computed in float32, also under a trainer's autocast: the measures are ratios of small
    squared gradients, which bf16/fp16 would quantise into different weights."""
    if temperature <= 0:
        raise ValueError(f"adaptive-weight temperature must be > 0, got {temperature}")
    with torch.no_grad(), torch.autocast(ir.device.type, enabled=False):
        g_ir, g_vi = information_measures(network, ir.float(), vi.float(), stages)
        weights = torch.softmax(torch.stack([g_ir, g_vi], dim=1).float() / temperature, dim=1)
    return weights[:, 0], weights[:, 1]


@dataclass(frozen=True)
class LossSettings:
    """Term weights (paper: per 1, l1 = ssim = grad = 15; w/o L_per: per 0) and the adaptive-weight choice."""

    per: float = 1.0
    l1: float = 15.0
    ssim: float = 15.0
    grad: float = 15.0
    stages: tuple[str, ...] = ("stem", "layer1", "layer2")
    temperature: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(self.stages))
        unknown = set(self.stages) - set(RESNET_STAGES)
        if unknown or not self.stages:
            raise ValueError(f"adaptive-weight stages {sorted(unknown) or '[]'}: expected some of {RESNET_STAGES}")
        if self.temperature <= 0:
            raise ValueError(f"adaptive-weight temperature must be > 0, got {self.temperature}")


class FusionLoss(torch.nn.Module):
    """L_total and its terms for a batch; the ResNet50 stays frozen (no parameter gets a gradient)."""

    terms = ("total", "per", "l1", "ssim", "grad")
    diagnostics = ("w_ir", "w_vi")

    def __init__(self, network: torch.nn.Module, settings: LossSettings = LossSettings()):
        super().__init__()
        self.network = network.eval().requires_grad_(False)
        self.settings = settings

    def train(self, mode: bool = True) -> "FusionLoss":
        super().train(mode)
        self.network.eval()  # frozen batch-norm statistics, whatever the trainer does
        return self

    def forward(self, fused: torch.Tensor, ir: torch.Tensor, vi: torch.Tensor) -> dict[str, torch.Tensor]:
        """Terms 'total', 'per', 'l1', 'ssim', 'grad' (scalars) and 'w_ir', 'w_vi' (per image)."""
        s = self.settings
        fused, ir, vi = fused.float(), ir.float(), vi.float()
        if s.per:
            per = perception_loss(self.network, fused).float()
        else:
            per = fused.new_zeros(())  # w/o L_per: the decision layer is not even run
        w_ir, w_vi = adaptive_weights(self.network, ir, vi, s.stages, s.temperature)
        with torch.autocast(fused.device.type, enabled=False):  # pixel terms always in float32
            terms = {
                "per": per,
                "l1": weighted_l1_loss(fused, ir, vi, w_ir, w_vi),
                "ssim": weighted_ssim_loss(fused, ir, vi, w_ir, w_vi),
                "grad": gradient_loss(fused, ir, vi),
            }
        total = s.per * terms["per"] + s.l1 * terms["l1"] + s.ssim * terms["ssim"] + s.grad * terms["grad"]
        return {"total": total, **terms, "w_ir": w_ir, "w_vi": w_vi}
