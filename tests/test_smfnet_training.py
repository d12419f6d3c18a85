"""SMFNet's two training stages through the generic trainer: what each stage's loss reaches, what each
stage updates, and a resume across the stage boundary that is bit-identical to a straight run (CPU)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fusion.learned.architecture import get_architecture, learned_method
from fusion.learned.data import folder_pairs
from fusion.learned.trainer import Trainer, TrainSettings
from fusion.smfnet.config import SMFNetConfig
from fusion.smfnet.losses import SMFNetLoss, SMFNetObjective
from fusion.smfnet.model import MODULES, SMFNet
from fusionbench.images import write_image

TINY = SMFNetConfig(channels=8, heads=2, cross_heads=2, leff_hidden=8, base_groups=1, base_pairs=1)
FUSION_ONLY = ("base_fusion.", "detail_fusion.", "graph.merge_conv.")  # F_graph's merge feeds the fused image only


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """Four random 20x24 pairs on disk (the trainer reads files)."""
    root = tmp_path_factory.mktemp("smfnet_pairs")
    rng = np.random.default_rng(0)
    for name in "abcd":
        write_image(root / "ir" / f"{name}.png", (rng.random((20, 24)) * 255).astype(np.uint8))
        write_image(root / "vi" / f"{name}.png", (rng.random((20, 24, 3)) * 255).astype(np.uint8))
    return folder_pairs(root)


def trainer(pairs, out, resume: bool = True) -> Trainer:
    method = learned_method("smfnet")
    settings = TrainSettings(**{**method.train, "epochs": 2, "stage_epochs": (1,), "batch_size": 2, "crop": 16,
                                "workers": 0, "lr_peak": 1e-3})
    return Trainer(get_architecture("smfnet"), TINY, method.make_loss(), pairs, [], out, settings,
                   method="smfnet", resume=resume)


def changed(before: dict, after: dict) -> set[str]:
    return {k for k in after if not torch.equal(before[k], after[k])}


def test_each_stage_updates_its_modules(pairs, tmp_path):
    run = trainer(pairs, tmp_path / "run")
    start = {k: v.clone() for k, v in run.model.state_dict().items()}
    run.fit(until_epoch=1)
    assert run.stage.name == "fusion" and run.epoch == 1
    after_one = {k: v.clone() for k, v in run.model.state_dict().items()}
    stage_one = changed(start, after_one)
    assert {k.split(".")[0] for k in stage_one} == {"encoder", "decoder", "graph"}
    assert not any(k.startswith(FUSION_ONLY) for k in stage_one)
    run.fit()
    stage_two = changed(after_one, run.model.state_dict())
    assert {k.split(".")[0] for k in stage_two} == set(MODULES)
    assert any(k.startswith("graph.merge_conv.") for k in stage_two)


def test_resume_across_the_stage_boundary_is_exact(pairs, tmp_path):
    straight = trainer(pairs, tmp_path / "straight")
    straight.fit()
    trainer(pairs, tmp_path / "resumed").fit(until_epoch=1)
    resumed = trainer(pairs, tmp_path / "resumed")
    assert resumed.epoch == 1 and resumed.stage.name == "fusion"
    resumed.fit()
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "straight" / "loss.csv").read_text() == (tmp_path / "resumed" / "loss.csv").read_text()


@pytest.mark.parametrize("preset", ["paper", "released"])
def test_what_each_stage_loss_reaches(preset):
    torch.manual_seed(0)
    model = SMFNet(TINY).train()
    objective = SMFNetObjective(SMFNetLoss(preset))
    ir, vi = torch.rand(2, 1, 12, 14), torch.rand(2, 1, 12, 14)
    objective(model, ir, vi, "reconstruction")["total"].backward()
    for name, param in model.named_parameters():
        assert (param.grad is None) == name.startswith(FUSION_ONLY), name
    model.zero_grad(set_to_none=True)
    objective(model, ir, vi, "fusion")["total"].backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
    # gamma starts at 0: the propagation's GRU and edge weights get a gradient only once it has moved
    behind_gamma = tuple(f"graph.propagate_{m}.{p}." for m in ("ir", "vi") for p in ("gru", "edge"))
    zero = [n for n, p in model.named_parameters() if not bool(p.grad.abs().sum() > 0)]
    assert zero and all(n.startswith(behind_gamma) for n in zero), zero


def test_registered_methods_and_stages():
    arch = get_architecture("smfnet")
    assert [s.name for s in arch.stages] == ["reconstruction", "fusion"]
    assert arch.stages[0].groups == ("encoder", "decoder", "graph") and arch.stages[1].groups is None
    assert arch.param_groups(SMFNet(TINY)) == {m: [f"{m}."] for m in MODULES}
    assert arch.valid_size(TINY, 2) and arch.valid_size(TINY, 37) and arch.default_crop == 128
    assert learned_method("smfnet").make_loss().preset == "released"
    assert learned_method("smfnet_paper").make_loss().preset == "paper"
