"""The frozen ImageNet ResNet50 that S4Fusion uses twice: the perception-enhanced loss (entropy of
its decision layer) and the decision-layer entropy reported per fused image (paper Fig. 13).

Weights never download implicitly: a file path, torchvision's ImageNet weights when the user asks
for them, or a randomly initialised network only when the user explicitly accepts it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from fusionbench.errors import FusionBenchError
from fusionbench.unpickling import refusal_message, refused_global

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WEIGHTS_HINT = (
    "download torchvision's ResNet50 ImageNet weights (e.g. resnet50-11ad3fa6.pth from the torchvision "
    "model zoo) and pass the path, or use torchvision's own download on a machine that is online"
)


class WeightsError(FusionBenchError):
    """Pre-trained weights that are missing or unusable."""


@dataclass(frozen=True)
class PerceptionSource:
    """Which weights the perception network has; recorded in logs, checkpoints and reports."""

    kind: str  # "file" | "torchvision" | "random"
    detail: str

    @property
    def is_random(self) -> bool:
        return self.kind == "random"


def build_resnet50(
    weights: str | Path | None = None, use_torchvision: bool = False, allow_random: bool = False
) -> tuple[torch.nn.Module, PerceptionSource]:
    """A frozen ResNet50 in eval mode, and where its weights came from."""
    import torchvision  # here: its import takes seconds, and every command that reads a config imports this module

    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsError(f"{path}: ResNet50 weights not found; {WEIGHTS_HINT}")
        model = torchvision.models.resnet50()
        model.load_state_dict(_read_state(path))
        source = PerceptionSource("file", str(path.resolve()))
    elif use_torchvision:
        model = torchvision.models.resnet50(weights=torchvision.models.ResNet50_Weights.IMAGENET1K_V1)
        source = PerceptionSource("torchvision", "IMAGENET1K_V1")
    elif allow_random:
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(0)  # the same random network every time, without disturbing the caller's RNG
        model = torchvision.models.resnet50()
        torch.random.set_rng_state(generator_state)
        source = PerceptionSource("random", "randomly initialised (seed 0): NOT ImageNet weights")
        log.warning("perception network: %s; entropy numbers are not comparable with the paper", source.detail)
    else:
        raise WeightsError(
            "no ResNet50 weights given; " + WEIGHTS_HINT + "; or accept a randomly initialised network explicitly"
        )
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model, source


def _read_state(path: Path) -> dict:
    """A ResNet50 state dict from ``path`` (plain or under ``state_dict``), read with ``weights_only``."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many types for a damaged, foreign or unsafe file
        name = refused_global(error)
        raise WeightsError(refusal_message(path, name) if name else
                           f"{path}: cannot be read as ResNet50 weights ({type(error).__name__}: "
                           f"{str(error).splitlines()[0] if str(error) else 'no detail'})") from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: expected a ResNet50 state dict, found {type(state).__name__}")
    return state


def to_imagenet_input(images: torch.Tensor) -> torch.Tensor:
    """(B, 1 or 3, H, W) in [0, 1] -> (B, 3, H, W) ImageNet-normalised (grey repeated to 3 channels)."""
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    mean = images.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = images.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (images - mean) / std


def softmax_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of softmax(logits) per row: 0 for one-hot, log(K) for uniform."""
    log_p = F.log_softmax(logits, dim=-1)
    return -(log_p.exp() * log_p).sum(dim=-1)


def decision_entropy(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Entropy of the ResNet50 decision layer for (B, 1 or 3, H, W) images in [0, 1] (differentiable)."""
    return softmax_entropy(model(to_imagenet_input(images)))
