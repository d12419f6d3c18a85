"""SMFNet's two-stage training, as data (the release's ``train.py``).

Stage I, "reconstruction" (epochs 1-40 of 120): encoder, decoder and graph reasoning learn to
reconstruct each source (:meth:`SMFNet.reconstruct`, the stage-I loss); the fusion layers are not
updated. Stage II, "fusion" (epochs 41-120): all five modules train on the fusion loss, nothing frozen.
Each module has its own Adam (lr 1e-4, no weight decay), StepLR (20 epochs, gamma 0.5; the fusion
layers' schedule starts with stage II), gradient-norm clip 0.01 and a learning-rate floor of 1e-6.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from fusion.smfnet.model import MODULES


@dataclass(frozen=True)
class TrainingStage:
    """One stage: its name (also the objective's and the model's stage argument), the modules it
    updates and its share of the epochs in the release (40 of 120, then 80)."""

    name: str
    modules: tuple[str, ...]
    share: float


STAGES = (
    TrainingStage("reconstruction", ("encoder", "decoder", "graph"), 40 / 120),
    TrainingStage("fusion", MODULES, 80 / 120),
)
RELEASED_EPOCHS = 120
LEARNING_RATE = 1e-4
LR_STEP_EPOCHS = 20
LR_GAMMA = 0.5
LR_FLOOR = 1e-6
GRAD_CLIP = 0.01
BATCH = 6
CROP = 128


def param_groups(model: nn.Module) -> dict[str, list[str]]:
    """The five modules as parameter groups (name -> parameter-name prefixes)."""
    return {name: [f"{name}."] for name in MODULES}


def stage_epochs(total: int, stages: tuple[TrainingStage, ...] = STAGES) -> list[int]:
    """Epochs per stage for a run of ``total`` epochs, by the stages' shares (the last takes the rest;
    every stage gets at least one epoch)."""
    if total < len(stages):
        raise ValueError(f"{total} epochs cannot hold the {len(stages)} SMFNet training stages")
    counts = [max(1, round(total * s.share)) for s in stages[:-1]]
    return [*counts, total - sum(counts)]
