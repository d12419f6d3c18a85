"""S4Fusion's registry entry: the architecture for the learned-fuser framework and its benchmark
methods (the model, paper Table V's fusion-block ablations, and the model trained without L_per)."""
from __future__ import annotations

from typing import Any

from torch import nn

from fusion.learned.architecture import Architecture, LearnedMethod, register_architecture, register_method
from fusion.learned.objective import FusedOutputObjective
from fusion.s4fusion import geometry
from fusion.s4fusion.checkpoint import CONVERTERS
from fusion.s4fusion.config import S4FusionConfig
from fusion.s4fusion.interpret import DeltaRecorder
from fusion.s4fusion.losses import FusionLoss, LossSettings
from fusion.s4fusion.model import S4Fusion


def next_valid_size(config: S4FusionConfig, side: int) -> int:
    return geometry.next_valid_size(side, config.merges)


def build_objective(loss: LossSettings, perception: nn.Module | None) -> FusedOutputObjective:
    assert perception is not None  # the trainer provides it: needs_perception
    return FusedOutputObjective(FusionLoss(perception, loss))


def recorders(config: Any) -> tuple[DeltaRecorder]:
    return (DeltaRecorder(),)


S4FUSION = register_architecture(Architecture(
    name="s4fusion", config=S4FusionConfig, build=S4Fusion, next_valid_size=next_valid_size,
    loss=LossSettings, build_objective=build_objective, default_crop=229, needs_perception=True,
    recorders=recorders, converters=CONVERTERS,
    description="S4Fusion (Li et al.): VSS encoders, cross-modal spatial awareness (CMSA) fusion, VSS decoder",
))

for _name, _block, _description in (
    ("s4fusion", "cmsa", "S4Fusion as released"),
    ("s4fusion_wo_pm", "cmsa_no_mark", "Table V: CMSA without the patch mark"),
    ("s4fusion_add", "add", "Table V: fusion by addition"),
    ("s4fusion_cnn", "cnn", "Table V: a CNN fusion block"),
    ("s4fusion_ca", "channel_attn", "Table V: cross attention over channels"),
    ("s4fusion_sa", "spatial_attn", "Table V: cross attention over tokens"),
    ("s4fusion_va", "vanilla_attn", "Table V: self-attention over both token sequences"),
):
    register_method(LearnedMethod(_name, "s4fusion", model={"fusion_block": _block}, description=_description))
register_method(LearnedMethod("s4fusion_wo_per", "s4fusion", model={"fusion_block": "cmsa"}, loss={"per": 0.0},
                              description="S4Fusion trained without the perception loss L_per"))
