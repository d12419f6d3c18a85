"""SMFNet's training losses, both presets (one switch, :class:`SMFNetLoss.preset`).

Stage I (reconstruction), per ``../shared/SMFNET.md``:
    L = L_V + L_I + 2 L_dec1 + 5 L_g
    L_V = 8 L_ssim(V, V^) + L_sem + 10 ||G V - G V^||_1
    L_I = 8 L_ssim(I, I^) + MSE(mean I^2, mean I^^2) + 10 ||G I - G I^||_1
    L_g = ||SG V - SG V^||_1,  L_dec1 = cc(D_V, D_I)^2 / (1.01 + cc(B_V, B_I))
Stage II (fusion):
    L = ||F - max(V, I)||_1 + w_grad ||G F - max(G V, G I)||_1 + w_dec L_dec2
    L_dec2 = (cc(D_V, D_I)^2 + cc(G_I, G_V)^2) / (1.01 + cc(B_V, B_I))

G = |Sobel_x| + |Sobel_y| with zero padding; SG is kornia's SpatialGradient (Sobel / 8, replicate
padding); SSIM uses an 11x11 Gaussian window (sigma 1.5), C1 = 1e-4, C2 = 9e-4 and reflect padding;
||.||_1 is a mean.

Presets:
- ``paper``: w_grad = 2, w_dec = 10; cc is CDDFuse's differentiable one (per sample and channel, then
  the mean); L_ssim = 1 - mean SSIM.
- ``released`` (``train.py``): w_grad = 10, w_dec = 2; cc_D counted twice instead of cc_G; cc over the
  whole tensor through ``.item()``, so the decomposition term has no gradient at all; L_ssim =
  mean(clamp(1 - SSIM, 0, 1)) / 2 (kornia 0.2.0).
L_sem is the release's Lovasz-Softmax of softmax(V^) over its one channel (identically 1) against the
labels V: a constant without gradient, the share of pixels that are not exactly 0 when some pixel is
0, else 0. Both presets keep it, as released.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fusion.smfnet.model import Fusion, Reconstruction

PRESETS = ("paper", "released")
SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))
SSIM_C1, SSIM_C2 = 1e-4, 9e-4
EPS = torch.finfo(torch.float32).eps


@dataclass(frozen=True)
class SMFNetLoss:
    """Loss arguments: the preset; stage I weights are the same in both (paper = release)."""

    preset: str = "paper"

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"SMFNet loss preset {self.preset!r}: expected one of {PRESETS}")

    @property
    def released(self) -> bool:
        return self.preset == "released"

    @property
    def fusion_gradient_weight(self) -> float:
        return 10.0 if self.released else 2.0

    @property
    def fusion_decomposition_weight(self) -> float:
        return 2.0 if self.released else 10.0


def sobel_magnitude(images: torch.Tensor) -> torch.Tensor:
    """G = |Sobel_x| + |Sobel_y| per channel of (B, C, H, W), zero padding (same size)."""
    kx = images.new_tensor(SOBEL_X)
    kernel = torch.stack([kx, kx.t()]).unsqueeze(1)  # (2, 1, 3, 3)
    b, c, h, w = images.shape
    response = F.conv2d(images.reshape(b * c, 1, h, w), kernel, padding=1)
    return response.abs().sum(dim=1).reshape(b, c, h, w)


def spatial_gradient(images: torch.Tensor) -> torch.Tensor:
    """kornia's SpatialGradient: (B, C, 2, H, W) Sobel x and y divided by 8, replicate padding."""
    kx = images.new_tensor(SOBEL_X) / 8.0
    kernel = torch.stack([kx, kx.t()]).unsqueeze(1)
    b, c, h, w = images.shape
    padded = F.pad(images.reshape(b * c, 1, h, w), (1, 1, 1, 1), mode="replicate")
    return F.conv2d(padded, kernel).reshape(b, c, 2, h, w)


def gaussian_kernel(size: int = 11, sigma: float = 1.5, dtype=torch.float32, device=None) -> torch.Tensor:
    coords = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def ssim_map(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-pixel SSIM of (B, C, H, W) pairs, same size (reflect padding), C1 = 1e-4, C2 = 9e-4."""
    g = gaussian_kernel(window, sigma, x.dtype, x.device)
    channels, pad = x.shape[1], window // 2

    def blur(t: torch.Tensor) -> torch.Tensor:
        t = F.pad(t, (pad, pad, pad, pad), mode="reflect")
        t = F.conv2d(t, g.view(1, 1, 1, -1).expand(channels, 1, 1, window), groups=channels)
        return F.conv2d(t, g.view(1, 1, -1, 1).expand(channels, 1, window, 1), groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    var_x, var_y = blur(x * x) - mu_x**2, blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    return ((2 * mu_x * mu_y + SSIM_C1) * (2 * cov + SSIM_C2)) / (
        (mu_x**2 + mu_y**2 + SSIM_C1) * (var_x + var_y + SSIM_C2))


def ssim_loss(x: torch.Tensor, y: torch.Tensor, released: bool) -> torch.Tensor:
    """paper: 1 - mean SSIM; released (kornia 0.2.0): mean(clamp(1 - SSIM, 0, 1)) / 2."""
    index = ssim_map(x, y)
    if released:
        return (1 - index).clamp(0, 1).mean() / 2
    return 1 - index.mean()


def correlation(a: torch.Tensor, b: torch.Tensor, released: bool) -> torch.Tensor:
    """Pearson correlation. paper (CDDFuse): per sample and channel over pixels, clamped to [-1, 1],
    then the mean; released: over the whole tensor, clamped, detached (the release's ``.item()``)."""
    a, b = (a.detach().flatten(), b.detach().flatten()) if released else (a.flatten(2), b.flatten(2))
    a = a - a.mean(dim=-1, keepdim=True)
    b = b - b.mean(dim=-1, keepdim=True)
    cc = (a * b).sum(dim=-1) / (EPS + a.pow(2).sum(dim=-1).sqrt() * b.pow(2).sum(dim=-1).sqrt())
    return cc.clamp(-1.0, 1.0).mean()


def gram_loss(image: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """MSE between the Gram matrices of 1-channel images, i.e. between their mean squares per image."""
    gram = image.pow(2).flatten(1).mean(dim=1)
    gram_hat = reconstruction.pow(2).flatten(1).mean(dim=1)
    return F.mse_loss(gram_hat, gram)


def lovasz_constant(labels: torch.Tensor) -> torch.Tensor:
    """The release's Lovasz-Softmax on a one-channel softmax (identically 1) with ``labels`` as classes:
    only class 0 can be present; its loss is the share of the batch's pixels that are not 0."""
    labels = labels.detach()
    zero = labels == 0
    if not bool(zero.any()):
        return labels.new_zeros(())
    return (~zero).sum().to(labels.dtype) / labels.numel()


def gradient_l1(image: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    return (sobel_magnitude(image) - sobel_magnitude(reconstruction)).abs().mean()


class SMFNetObjective(torch.nn.Module):
    """``objective(net, ir, vi, stage) -> terms`` for stage "reconstruction" (I) or "fusion" (II);
    ``net(ir, vi, stage=...)`` returns the stage's outputs. Terms: "total" first, then each term."""

    terms = ("total", "ssim_v", "ssim_i", "sem", "gram", "grad_v", "grad_i", "spatial_grad", "decomposition",
             "intensity", "grad_fused")
    diagnostics: tuple[str, ...] = ()

    def __init__(self, loss: SMFNetLoss = SMFNetLoss()):
        super().__init__()
        self.loss = loss

    def forward(self, net: torch.nn.Module, ir: torch.Tensor, vi: torch.Tensor, stage: str) -> dict[str, torch.Tensor]:
        rules = {"reconstruction": self.reconstruction_terms, "fusion": self.fusion_terms}
        if stage not in rules:
            raise ValueError(f"SMFNet has the stages {tuple(rules)}, not {stage!r}")
        terms = rules[stage](net(ir, vi, stage=stage), ir, vi)
        zero = ir.new_zeros(())
        return {name: terms.get(name, zero) for name in self.terms}

    def reconstruction_terms(self, out: Reconstruction, ir: torch.Tensor, vi: torch.Tensor) -> dict[str, torch.Tensor]:
        released = self.loss.released
        t = {
            "ssim_v": ssim_loss(vi, out.vi_hat, released),
            "ssim_i": ssim_loss(ir, out.ir_hat, released),
            "sem": lovasz_constant(vi),
            "gram": gram_loss(ir, out.ir_hat),
            "grad_v": gradient_l1(vi, out.vi_hat),
            "grad_i": gradient_l1(ir, out.ir_hat),
            "spatial_grad": (spatial_gradient(vi) - spatial_gradient(out.vi_hat)).abs().mean(),
            "decomposition": correlation(out.vi.detail, out.ir.detail, released) ** 2
            / (1.01 + correlation(out.vi.base, out.ir.base, released)),
        }
        loss_v = 8 * t["ssim_v"] + t["sem"] + 10 * t["grad_v"]
        loss_i = 8 * t["ssim_i"] + t["gram"] + 10 * t["grad_i"]
        t["total"] = loss_v + loss_i + 2 * t["decomposition"] + 5 * t["spatial_grad"]
        return t

    def fusion_terms(self, out: Fusion, ir: torch.Tensor, vi: torch.Tensor) -> dict[str, torch.Tensor]:
        released = self.loss.released
        cc_detail = correlation(out.vi.detail, out.ir.detail, released)
        cc_second = cc_detail if released else correlation(out.graph_ir, out.graph_vi, released)
        t = {
            "intensity": (out.fused - torch.maximum(vi, ir)).abs().mean(),
            "grad_fused": (sobel_magnitude(out.fused)
                           - torch.maximum(sobel_magnitude(vi), sobel_magnitude(ir))).abs().mean(),
            "decomposition": (cc_detail**2 + cc_second**2) / (1.01 + correlation(out.vi.base, out.ir.base, released)),
        }
        t["total"] = (t["intensity"] + self.loss.fusion_gradient_weight * t["grad_fused"]
                      + self.loss.fusion_decomposition_weight * t["decomposition"])
        return t
