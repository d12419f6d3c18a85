"""SMFNet: the released parity fixture through the checkpoint loader, parameter counts as in
../shared/SMFNET.md, every module's shapes at odd sizes, and wrong files refused with their keys."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fusion.learned.checkpoint import CheckpointError, load_checkpoint, load_model
from fusion.learned.inference import min_max
from fusion.smfnet.checkpoint import convert_released, released_unused_parameters, released_unused_shapes
from fusion.smfnet.config import SMFNetConfig, SMFNetConfigError
from fusion.smfnet.decoder import Decoder
from fusion.smfnet.encoder import Encoder
from fusion.smfnet.fusion_layers import BaseFusion, DetailFusion
from fusion.smfnet.graph import GraphReasoning
from fusion.smfnet.model import SMFNet

SMALL = SMFNetConfig(channels=16, heads=2, cross_heads=2, leff_hidden=16, base_groups=1, base_pairs=1)
BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def fixture(shared_path):
    return torch.load(shared_path("fixtures/smfnet_released_parity.pt"), weights_only=False)


@pytest.fixture(scope="module")
def released_file(fixture, tmp_path_factory):
    path = tmp_path_factory.mktemp("smfnet") / "model_VIF.pth"
    torch.save(fixture["checkpoint"], path)
    return path


def test_released_checkpoint_reproduces_the_fixture(fixture, released_file):
    model, config, arch, _ = load_checkpoint(released_file)
    assert arch.name == "smfnet" and config == SMFNetConfig() and not model.training
    with torch.no_grad():
        out = model(fixture["ir"], fixture["vi"])
    assert out.shape == fixture["out"].shape == (1, 1, 37, 45)
    assert (out - fixture["out"]).abs().max().item() < 1e-5
    assert (min_max(out) - fixture["out_minmax"]).abs().max().item() < 1e-5


def test_parameter_counts_match_the_release(fixture):
    model = SMFNet()
    counts = {name: n_params(module) for name, module in model.module_groups().items()}
    assert counts == {"encoder": 1_859_664, "graph": 501_570, "detail_fusion": 211_008,
                      "decoder": 50_520, "base_fusion": 27_336}
    assert n_params(model) == 2_650_098
    unused = convert_released(fixture["checkpoint"]).unused
    assert {k: tuple(v.shape) for k, v in unused.items()} == released_unused_shapes()
    unused_params = sum(v.numel() for k, v in unused.items() if not k.endswith(BN_BUFFERS))
    assert unused_params == released_unused_parameters() == 498_720
    assert n_params(model) + unused_params == fixture["num_params"] == 3_148_818


@pytest.mark.parametrize("height,width", [(2, 2), (13, 21)])
def test_every_module_keeps_odd_sizes(height, width):
    torch.manual_seed(0)
    c, b = SMALL.channels, 2
    image = torch.rand(b, 1, height, width)
    feature = torch.randn(b, c, height, width)
    with torch.no_grad():
        shallow, detail, base = Encoder(SMALL).eval()(image)
        assert shallow.shape == detail.shape == base.shape == (b, c, height, width)
        graph = GraphReasoning(SMALL).eval()
        g_ir, g_vi = graph(feature, feature.flip(0))
        assert g_ir.shape == g_vi.shape == graph.merge(g_ir, g_vi).shape == (b, c, height, width)
        assert BaseFusion(SMALL)(feature).shape == DetailFusion(SMALL)(feature).shape == (b, c, height, width)
        decoded = Decoder(SMALL)(feature)
        assert decoded.shape == (b, 1, height, width) and bool(((decoded > 0) & (decoded < 1)).all())
        model = SMFNet(SMALL).eval()
        assert model(image, image.flip(0)).shape == (b, 1, height, width)
        rec = model(image, image, stage="reconstruction")
        assert rec.ir_hat.shape == rec.vi_hat.shape == (b, 1, height, width)


def test_default_sizes_run_at_an_odd_size():
    with torch.no_grad():
        assert SMFNet().eval()(torch.rand(1, 1, 7, 9), torch.rand(1, 1, 7, 9)).shape == (1, 1, 7, 9)


def test_wrong_file_lists_missing_and_unexpected_keys(fixture, tmp_path):
    checkpoint = {name: dict(state) for name, state in fixture["checkpoint"].items()}
    del checkpoint["DIDF_Decoder"]["module.output.4.weight"]
    checkpoint["GraphModel"]["module.graph.extra.weight"] = torch.zeros(3)
    path = tmp_path / "model_VIF.pth"
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError) as err:
        load_model(path)
    message = str(err.value)
    assert str(path) in message
    assert "missing (1): decoder.head.4.weight" in message
    assert "unexpected (1): graph.graph.extra.weight" in message
    del checkpoint["GraphModel"]["module.graph.extra.weight"]
    checkpoint["DIDF_Decoder"]["module.output.4.weight"] = fixture["checkpoint"]["DIDF_Decoder"]["module.output.4.weight"]
    del checkpoint["BaseFuseLayer"]["module.reduce_channel.weight"]  # an unused module's weight
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match="unused modules differ.*BaseFuseLayer.module.reduce_channel.weight"):
        load_model(path)


def test_file_without_the_five_modules_is_refused(tmp_path):
    path = tmp_path / "model.pth"
    torch.save({"DIDF_Encoder": {}, "DIDF_Decoder": {}}, path)
    with pytest.raises(CheckpointError, match="model_VIF.pth"):  # the error names the layouts it knows
        load_model(path)


def test_sizes_that_do_not_fit_are_refused():
    with pytest.raises(SMFNetConfigError, match="cross_heads"):
        SMFNetConfig(channels=16, heads=2, cross_heads=3)
    with pytest.raises(SMFNetConfigError, match="unknown SMFNet config keys"):
        SMFNetConfig.from_dict({"channel": 16})


def test_smfnet_fuses_with_the_released_min_max_unless_told_to_clamp(tmp_path):
    from fusion.learned.architecture import get_architecture
    from fusion.learned.checkpoint import save_checkpoint
    from fusion.registry import build_fuser

    torch.manual_seed(0)
    path = tmp_path / "best.pt"
    save_checkpoint(path, get_architecture("smfnet"), SMALL, SMFNet(SMALL))
    rng = np.random.default_rng(0)
    ir, vi = rng.random((19, 23), dtype=np.float32), rng.random((19, 23), dtype=np.float32)  # grey visible
    released = build_fuser("smfnet", weights=path, device="cpu")
    assert released.output == "minmax"
    stretched = released(ir, vi)
    assert stretched.shape == (19, 23, 3) and stretched.min() == 0 and stretched.max() == 255
    clamped = build_fuser("smfnet", weights=path, device="cpu", output="clamp")(ir, vi)
    with torch.no_grad():
        raw = SMFNet(SMALL).eval()
        raw.load_state_dict(torch.load(path, weights_only=True)["state_dict"])
        expected = raw(torch.from_numpy(ir)[None, None], torch.from_numpy(vi)[None, None])[0, 0].numpy()
    assert np.abs(clamped[..., 0].astype(float) - np.rint(expected * 255)).max() <= 1
