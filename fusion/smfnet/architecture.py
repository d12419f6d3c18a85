"""SMFNet's registry entry: the architecture for the learned-fuser framework and its benchmark methods
(``smfnet``: the release's loss and training; ``smfnet_paper``: the same network and training with the
paper's loss). Both fuse as the release's ``test.py`` does: each fused image min-max normalised to
[0, 1] (the fuser's ``output="clamp"`` keeps the sigmoid output as it is; see
:mod:`fusion.learned.inference`)."""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from fusion.learned.architecture import Architecture, Converter, LearnedMethod, register_architecture, register_method
from fusion.smfnet.checkpoint import RELEASED_MODULES, is_released, released_weights
from fusion.smfnet.config import SMFNetConfig
from fusion.smfnet.losses import SMFNetLoss, SMFNetObjective
from fusion.smfnet.model import SMFNet
from fusion.smfnet.stages import CROP, RELEASED_TRAINING, STAGES, param_groups


def next_valid_size(config: SMFNetConfig, side: int) -> int:
    """Every convolution has stride 1 and 'same' padding: any side of at least 2 pixels (the
    reflect padding of the inverted residual blocks needs 2)."""
    return max(side, 2)


def build_objective(loss: SMFNetLoss, perception: nn.Module | None) -> SMFNetObjective:
    return SMFNetObjective(loss)


def _from_released(payload: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    return {}, released_weights(payload)


SMFNET = register_architecture(Architecture(
    name="smfnet", config=SMFNetConfig, build=SMFNet, next_valid_size=next_valid_size, loss=SMFNetLoss,
    build_objective=build_objective, default_crop=CROP, stages=STAGES, param_groups=param_groups,
    converters=(Converter(f"the authors' models/model_VIF.pth (DataParallel state dicts {sorted(RELEASED_MODULES)})",
                          is_released, _from_released),),
    description="SMFNet: shared transformer encoder (cross-attention detail, residual-transformer base), "
                "graph reasoning across modalities, two fusion layers, shared decoder; two training stages",
))

register_method(LearnedMethod("smfnet", "smfnet", loss={"preset": "released"}, train=RELEASED_TRAINING, output="minmax",
                              description="SMFNet as released (loss of train.py, Adam 1e-4, StepLR, 40 + 80 epochs; "
                                          "test.py's per-image min-max output)"))
register_method(LearnedMethod("smfnet_paper", "smfnet", loss={"preset": "paper"}, train=RELEASED_TRAINING, output="minmax",
                              description="SMFNet trained with the paper's loss (differentiable decomposition "
                                          "term with cc_G, a4 = 10, a5 = 2)"))
