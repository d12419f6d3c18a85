"""SMFNet's two training stages: which modules the stage-I and stage-II losses reach and update."""
from __future__ import annotations

import pytest
import torch

from fusion.smfnet.config import SMFNetConfig
from fusion.smfnet.losses import SMFNetLoss, SMFNetObjective
from fusion.smfnet.model import MODULES, SMFNet
from fusion.smfnet.stages import STAGES, param_groups, stage_epochs

SMALL = SMFNetConfig(channels=16, heads=2, cross_heads=2, leff_hidden=16, base_groups=1, base_pairs=1)


def step(stage_name: str, preset: str = "paper"):
    """One release-style step: one Adam per module of the stage, clip 0.01 per module."""
    torch.manual_seed(0)
    model = SMFNet(SMALL).train()
    stage = next(s for s in STAGES if s.name == stage_name)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    groups = model.module_groups()
    optimizers = [torch.optim.Adam(groups[m].parameters(), lr=1e-4) for m in stage.modules]
    ir, vi = torch.rand(2, 1, 24, 20), torch.rand(2, 1, 24, 20)
    terms = SMFNetObjective(SMFNetLoss(preset))(model, ir, vi, stage_name)
    terms["total"].backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    for m in stage.modules:
        torch.nn.utils.clip_grad_norm_(groups[m].parameters(), 0.01)
    for optimizer in optimizers:
        optimizer.step()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    return model, grads, changed


def module_of(name: str) -> str:
    return name.split(".")[0]


def test_stage_one_trains_encoder_decoder_and_graph_only():
    model, grads, changed = step("reconstruction")
    unused_in_stage_one = ("graph.merge_conv.",)  # F_graph merges for the fused image only
    for name, grad in grads.items():
        reached = module_of(name) in ("encoder", "decoder", "graph") and not name.startswith(unused_in_stage_one)
        assert (grad is not None) == reached, name
    assert {module_of(k) for k in changed} == {"encoder", "decoder", "graph"}
    assert not any(k.startswith(("base_fusion.", "detail_fusion.", "graph.merge_conv.")) for k in changed)


@pytest.mark.parametrize("preset", ["paper", "released"])
def test_stage_two_trains_all_five_modules(preset):
    model, grads, changed = step("fusion", preset)
    assert [n for n, g in grads.items() if g is None] == []
    # gamma starts at 0, so the propagation's GRU and edge weights get their first gradient only once
    # gamma has moved; every other parameter gets one at once.
    behind_gamma = ("graph.propagate_ir.gru.", "graph.propagate_ir.edge.", "graph.propagate_vi.gru.",
                    "graph.propagate_vi.edge.")
    zero = [n for n, g in grads.items() if not bool(g.abs().sum() > 0)]
    assert zero and all(n.startswith(behind_gamma) for n in zero), zero
    assert {module_of(k) for k in changed} == set(MODULES)


def test_stage_data_and_epoch_split():
    assert [s.name for s in STAGES] == ["reconstruction", "fusion"]
    assert STAGES[0].modules == ("encoder", "decoder", "graph") and STAGES[1].modules == MODULES
    assert stage_epochs(120) == [40, 80] and stage_epochs(3) == [1, 2] and stage_epochs(2) == [1, 1]
    assert param_groups(SMFNet(SMALL)) == {m: [f"{m}."] for m in MODULES}
    with pytest.raises(ValueError, match="stages"):
        stage_epochs(1)
