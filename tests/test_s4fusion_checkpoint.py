"""S4Fusion checkpoints through the learned-fuser format: project files (today's and the first format) rebuild
the same model, the authors' model.pkl converts; wrong files fail with the keys listed."""
from __future__ import annotations

import pytest
import torch

from fusion.learned.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from fusion.s4fusion.architecture import S4FUSION
from fusion.s4fusion.model import S4Fusion, S4FusionConfig

TINY = S4FusionConfig(dims=(8, 16, 32), d_state=4, d_state_fusion=4, fusion_depth=1, topology="paper")


def test_project_checkpoint_rebuilds_the_same_model(tmp_path):
    torch.manual_seed(0)
    model = S4Fusion(TINY).eval()
    optimizer = torch.optim.AdamW(model.parameters())
    path = tmp_path / "run" / "last.pt"
    save_checkpoint(path, S4FUSION, TINY, model, epoch=7, optimizer=optimizer.state_dict())
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary left behind
    loaded, config, arch, payload = load_checkpoint(path)
    assert loaded.config == config == TINY and arch is S4FUSION and payload["arch"] == "s4fusion" and payload["epoch"] == 7 and "state" in payload["optimizer"]
    ir, vi = torch.rand(1, 1, 25, 37), torch.rand(1, 1, 25, 37)
    with torch.no_grad():
        assert torch.equal(loaded(ir, vi), model(ir, vi))


def test_released_layout_with_wrong_keys_lists_them(tmp_path):
    state = {f"vmunet.{k}": v for k, v in S4Fusion().state_dict().items() if not k.startswith("layers_up.2")}
    state["vmunet.extra_head.weight"] = torch.zeros(3)
    path = tmp_path / "model.pkl"
    torch.save({"model": state}, path)
    with pytest.raises(CheckpointError) as err:
        load_model(path)
    message = str(err.value)
    assert str(path) in message and "extra_head.weight" in message
    assert "missing (16)" in message and "layers_up.2.blocks.0.ln_1.weight" in message


def test_project_checkpoint_with_wrong_shapes_is_refused(tmp_path):
    model = S4Fusion(TINY)
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, S4FUSION, TINY, model)
    payload = torch.load(path, weights_only=True)
    payload["config"]["d_state"] = 6
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=r"wrong shape \(\d+\): .*A_logs: file \(\d+, 4\) vs model \(\d+, 6\)"):
        load_model(path)


def test_foreign_and_missing_files(tmp_path):
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pkl.*cannot be read"):
        load_model(junk)
    other = tmp_path / "other.pt"
    torch.save({"net": {"w": torch.zeros(1)}}, other)
    with pytest.raises(CheckpointError, match="other.pt: not a learned-fuser checkpoint.*model.pkl.*'net'"):
        load_model(other)
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        load_model(tmp_path / "nowhere.pt")


def test_checkpoint_of_the_first_project_format_still_loads(tmp_path):
    """Files the S4Fusion-only trainer wrote ({"format": "fusionbench.s4fusion/1", ...}) load unchanged."""
    torch.manual_seed(2)
    model = S4Fusion(TINY).eval()
    config = {k: list(v) if isinstance(v, tuple) else v for k, v in vars(TINY).items()}
    path = tmp_path / "old.pt"
    torch.save({"format": "fusionbench.s4fusion/1", "config": config, "state_dict": model.state_dict(), "epoch": 3}, path)
    loaded, loaded_config, arch, payload = load_checkpoint(path)
    assert loaded_config == TINY and arch is S4FUSION and payload["epoch"] == 3
    ir, vi = torch.rand(1, 1, 25, 37), torch.rand(1, 1, 25, 37)
    with torch.no_grad():
        assert torch.equal(loaded(ir, vi), model(ir, vi))
