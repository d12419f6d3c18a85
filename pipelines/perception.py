"""The frozen ImageNet ResNet50 of a run (S4Fusion's L_per and the decision-layer entropy), one rule for both."""
from __future__ import annotations

import torch

from fusion.perception import PerceptionSource, WeightsError, build_resnet50
from pipelines.config import ConfigError
from pipelines.schema import Config


def perception_network(config: Config) -> tuple[torch.nn.Module, PerceptionSource]:
    """``perception.*`` as a network; a missing or unusable weights file is an error naming those keys."""
    try:
        return build_resnet50(weights=config.perception.weights, use_torchvision=config.perception.torchvision,
                              allow_random=config.perception.allow_random)
    except WeightsError as error:
        raise ConfigError(f"perception: {error} (keys: perception.weights=PATH, perception.torchvision=true, "
                          "perception.allow_random=true)") from error
