"""SMFNet's two-stage training, as data (the release's ``train.py``).

Stage I, "reconstruction" (epochs 1-40 of 120): encoder, decoder and graph reasoning learn to
reconstruct each source (:meth:`SMFNet.reconstruct`, the stage-I loss); the fusion layers are not
updated. Stage II, "fusion" (epochs 41-120): all five modules train on the fusion loss, nothing frozen.
Each module is a parameter group with its own learning-rate schedule (the fusion layers' starts with
stage II) and gradient clipping, as the release's one Adam per module.

:data:`RELEASED_TRAINING` holds the release's hyper-parameters as training settings: Adam, lr 1e-4,
no weight decay, StepLR (20 epochs, gamma 0.5), clip 0.01, batch 6, 128x128 crops, no augmentation.
(The release also floors the learning rate at 1e-6, which 120 epochs never reach: 1e-4 * 0.5^5.)
"""
from __future__ import annotations

from typing import Any

from torch import nn

from fusion.learned.architecture import Stage
from fusion.smfnet.model import MODULES

STAGES = (
    Stage("reconstruction", groups=("encoder", "decoder", "graph"), share=40 / 120),
    Stage("fusion", groups=None, share=80 / 120),
)
CROP = 128
RELEASED_TRAINING: dict[str, Any] = {
    "epochs": 120, "batch_size": 6, "crop": CROP, "optimizer": "adam", "lr_schedule": "step", "lr_peak": 1e-4,
    "lr_step_epochs": 20, "lr_gamma": 0.5, "weight_decay": 0.0, "grad_clip": 0.01, "flips": False,
}


def param_groups(model: nn.Module) -> dict[str, list[str]]:
    """The five modules as parameter groups (name -> parameter-name prefixes)."""
    return {name: [f"{name}."] for name in MODULES}
