"""S4Fusion network: sizes, module shapes, scan orders, released-weights parity, parameter budgets."""
from __future__ import annotations

import pytest
import torch

from fusion.learned.architecture import learned_method
from fusion.learned.inference import crop_back
from fusion.s4fusion.cmsa import CMSABlock
from fusion.s4fusion.geometry import next_valid_size, pad_to_valid, valid_size
from fusion.s4fusion.layers import FoldHead, OverlapPatchEmbed, PatchExpanding, PatchMerging
from fusion.s4fusion.model import S4Fusion, S4FusionConfig
from fusion.s4fusion.ss2d import SS2D
from fusion.s4fusion.ssm import from_direction, to_direction

TINY = dict(dims=(8, 16, 32), d_state=4, d_state_fusion=4, fusion_depth=2)
METHODS = ["s4fusion", "s4fusion_wo_pm", "s4fusion_add", "s4fusion_cnn", "s4fusion_ca", "s4fusion_sa", "s4fusion_va"]


def test_valid_sizes_follow_the_patch_embedding_and_two_mergings():
    assert [s for s in range(2, 240) if valid_size(s)] == [13, 25, 37, 49, 61, 73, 85, 97, 109, 121, 133, 145,
                                                            157, 169, 181, 193, 205, 217, 229]
    for s in range(2, 300):
        n = next_valid_size(s)
        assert valid_size(n) and n >= s and not any(valid_size(t) for t in range(s, n))
    assert next_valid_size(480) == 481 and next_valid_size(640) == 649 and next_valid_size(1024) == 1033


@pytest.mark.parametrize("size", [(50, 70), (49, 61), (5, 3)])
def test_reflect_padding_round_trip(size):
    x = torch.rand(2, 1, *size)
    padded, original = pad_to_valid(x)
    assert all(valid_size(s) for s in padded.shape[-2:]) and original == size
    assert torch.equal(crop_back(padded, original), x)
    if padded.shape[-2] > size[0] and size[0] > 2:
        assert torch.equal(padded[:, :, size[0], : size[1]], x[:, :, size[0] - 2])  # reflection, not edge copy


@pytest.mark.parametrize("height,width", [(25, 37), (37, 25), (49, 61)])
def test_module_shapes(height, width):
    torch.manual_seed(0)
    h, w = (height - 1) // 3, (width - 1) // 3
    tokens = OverlapPatchEmbed(1, 8)(torch.rand(2, 1, height, width))
    assert tokens.shape == (2, h, w, 8)
    assert SS2D(8, d_state=4)(tokens).shape == tokens.shape
    d_ir, d_vi = CMSABlock(8, d_state=4)(tokens, tokens.flip(1))
    assert d_ir.shape == d_vi.shape == tokens.shape and not torch.allclose(d_ir, d_vi)
    merged = PatchMerging(8)(tokens)
    assert merged.shape == (2, h // 2, w // 2, 16)
    assert PatchExpanding(16)(merged).shape == tokens.shape
    assert FoldHead(8)(tokens, (height, width)).shape == (2, 1, height, width)
    model = S4Fusion(S4FusionConfig(**TINY)).eval()
    assert model(torch.rand(1, 1, height, width), torch.rand(1, 1, height, width)).shape == (1, 1, height, width)


def test_forward_rejects_invalid_sizes_and_mismatched_inputs():
    model = S4Fusion(S4FusionConfig(**TINY))
    with pytest.raises(ValueError, match="valid size.*37x61"):
        model(torch.rand(1, 1, 36, 61), torch.rand(1, 1, 36, 61))
    with pytest.raises(ValueError, match="same shape"):
        model(torch.rand(1, 1, 25, 25), torch.rand(1, 1, 25, 37))


def test_scan_orders_and_their_inverses():
    x = torch.arange(3 * 4 * 2, dtype=torch.float32).view(1, 1, 3, 4, 2)  # trailing (IR, VI) pair
    rows, cols = to_direction(x, 0)[0, 0], to_direction(x, 1)[0, 0]
    assert torch.equal(rows, x.flatten())
    assert torch.equal(cols, x[0, 0].transpose(0, 1).flatten())
    pairs = to_direction(x, 2)[0, 0].view(-1, 2)
    assert torch.equal(pairs, rows.view(-1, 2).flip(0))  # tokens reversed, IR still before VI
    assert torch.equal(to_direction(x, 3)[0, 0].view(-1, 2), cols.view(-1, 2).flip(0))
    for k in range(4):
        assert torch.equal(from_direction(to_direction(x, k), k, x.shape), x)


@pytest.mark.parametrize("kind", ["ss2d", "cmsa"])
def test_cpu_scan_in_place_equals_the_reordered_copies(kind):
    """On the CPU scan_2d reads u, Delta, B and C in place (directional_scan); the reordered
    copies (the GPU backends' path) must give the same output and the same gradients."""
    torch.manual_seed(0)
    block = SS2D(8, d_state=4) if kind == "ss2d" else CMSABlock(8, d_state=5)
    p_ir, p_vi = (torch.randn(2, block.d_inner, 5, 7, requires_grad=True) for _ in range(2))
    if kind == "ss2d":
        u, dbl = p_ir, block.project_all(p_ir)
    else:
        u = torch.stack((p_ir, p_vi), dim=2).movedim(2, -1)
        dbl = torch.stack((block.project_all(p_ir, "x_proj_weight"),
                           block.project_all(p_vi, "y_proj_weight")), dim=2).movedim(2, -1)
    in_place, reordered = block.scan_2d(u, dbl), block._scan_2d_reordered(u, dbl)
    assert in_place.shape == reordered.shape == u.shape
    assert (in_place - reordered).abs().max() <= 1e-6 * reordered.abs().max()
    weights = torch.randn(u.shape)
    leaves = [p_ir, p_vi, *block.parameters()] if kind == "cmsa" else [p_ir, *block.parameters()]
    grads = torch.autograd.grad((in_place * weights).sum(), leaves, retain_graph=True, allow_unused=True)
    expected = torch.autograd.grad((reordered * weights).sum(), leaves, allow_unused=True)
    for grad, want in zip(grads, expected):
        assert (grad is None) == (want is None)
        if want is not None:
            assert (grad - want).abs().max() <= 1e-5 * want.abs().max()


def test_released_parameter_count():
    assert sum(p.numel() for p in S4Fusion().parameters()) == 3_562_981
    assert sum(p.numel() for p in S4Fusion(S4FusionConfig(topology="paper")).parameters()) == 3_562_981


def test_parity_with_the_released_architecture(parity_fixture, tmp_path):
    from fusion.learned.checkpoint import load_model

    case = torch.load(parity_fixture, weights_only=False)
    torch.save(case["checkpoint"], tmp_path / "model.pkl")  # exactly the authors' file layout
    model = load_model(tmp_path / "model.pkl")
    assert sum(p.numel() for p in model.parameters()) == case["num_params"]
    with torch.no_grad():
        out = model(case["ir"], case["vi"])
    assert (out - case["out"]).abs().max().item() < 1e-4


def config_for_method(name: str, **overrides) -> S4FusionConfig:
    return learned_method(name).make_config(**overrides)


def test_method_names_map_to_configs():
    assert config_for_method("s4fusion") == S4FusionConfig() == config_for_method("s4fusion_wo_per")
    assert learned_method("s4fusion_wo_per").make_loss().per == 0 and learned_method("s4fusion").make_loss().per == 1
    assert config_for_method("s4fusion_ca").fusion_block == "channel_attn"
    assert config_for_method("s4fusion_wo_pm", topology="paper").topology == "paper"
    with pytest.raises(KeyError, match="not a learned method.*did you mean 's4fusion'"):
        config_for_method("s4fusion_xyz")
    with pytest.raises(ValueError, match="fusion_block"):
        S4FusionConfig(fusion_block="lstm")


def _fusion_params(name: str) -> int:
    return sum(p.numel() for p in S4Fusion(config_for_method(name)).fusion_layers.parameters())


def test_ablation_parameter_budgets_are_comparable_to_cmsa():
    cmsa = _fusion_params("s4fusion")
    model = S4Fusion()
    marks = sum(p.numel() for n, p in model.fusion_layers.named_parameters() if n.endswith("mark_proj"))
    assert _fusion_params("s4fusion_wo_pm") == cmsa - marks
    assert _fusion_params("s4fusion_add") == 0
    for name in ("s4fusion_cnn", "s4fusion_ca", "s4fusion_sa", "s4fusion_va"):
        assert 0.4 < _fusion_params(name) / cmsa < 1.2, name


@pytest.mark.parametrize("name,topology", [(m, "released") for m in METHODS] + [("s4fusion", "paper")])
def test_every_variant_trains(name, topology):
    torch.manual_seed(0)
    model = S4Fusion(config_for_method(name, topology=topology, **TINY))
    ir, vi = torch.rand(2, 1, 25, 37), torch.rand(2, 1, 25, 37)
    out = model(ir, vi)
    assert out.shape == ir.shape and torch.isfinite(out).all()
    out.square().mean().backward()
    no_grad = {n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0}
    # The released decoder never reads the finest-scale fusion; the head norm is unused by design.
    unused = {n for n, _ in model.named_parameters() if n.startswith("head.norm")}
    if topology == "released":
        unused |= {n for n, _ in model.named_parameters() if n.startswith("fusion_layers.0.")}
    assert no_grad == unused


def test_topologies_differ_on_the_same_weights():
    torch.manual_seed(0)
    released = S4Fusion(S4FusionConfig(**TINY)).eval()
    paper = S4Fusion(S4FusionConfig(topology="paper", **TINY)).eval()
    paper.load_state_dict(released.state_dict())
    ir, vi = torch.rand(1, 1, 25, 25), torch.rand(1, 1, 25, 25)
    with torch.no_grad():
        assert not torch.allclose(released(ir, vi), paper(ir, vi), atol=1e-4)


def test_cross_scan_follows_algorithm_1_token_by_token():
    """Independent re-statement of Patch Mark / Interleaving / Cross SS2D / Recovering with explicit
    token lists and the float64 reference scan; the block must agree with it."""
    from fusion.scan import selective_scan_ref

    torch.manual_seed(0)
    block = CMSABlock(8, d_state=3).double()
    height, width, d = 3, 4, block.d_inner
    p_ir, p_vi = torch.randn(2, d, height, width, dtype=torch.float64), torch.randn(2, d, height, width, dtype=torch.float64)
    mark = torch.einsum("bchw,dc->bdhw", torch.cat((p_ir, p_vi), 1), block.mark_proj)
    rows = [(i, j) for i in range(height) for j in range(width)]
    cols = [(i, j) for j in range(width) for i in range(height)]
    expected_ir, expected_vi = torch.zeros_like(p_ir), torch.zeros_like(p_vi)
    for k, order in enumerate([rows, cols, rows[::-1], cols[::-1]]):
        tokens = []  # [I_1, V_1, I_2, V_2, ...]: (input to scan, modality projection weight)
        for i, j in order:
            tokens += [(p_ir[:, :, i, j], p_ir[:, :, i, j] + mark[:, :, i, j], block.x_proj_weight[k]),
                       (p_vi[:, :, i, j], p_vi[:, :, i, j] + mark[:, :, i, j], block.y_proj_weight[k])]
        dbl = torch.stack([p @ w.T for p, _, w in tokens], dim=-1)  # Delta/B/C from the unmarked patch
        dts, b, c = dbl.split([block.dt_rank, block.d_state, block.d_state], dim=1)
        rows_k = slice(k * d, (k + 1) * d)
        out = selective_scan_ref(torch.stack([u for _, u, _ in tokens], -1),
                                 torch.einsum("dr,brl->bdl", block.dt_projs_weight[k], dts),
                                 -torch.exp(block.A_logs[rows_k]), b, c, block.Ds[rows_k],
                                 delta_bias=block.dt_projs_bias[k], delta_softplus=True)
        for n, (i, j) in enumerate(order):
            expected_ir[:, :, i, j] += out[:, :, 2 * n]
            expected_vi[:, :, i, j] += out[:, :, 2 * n + 1]
    with torch.no_grad():
        got = block.cross_scan_2d(p_ir, p_vi).double()  # the block scans in float32
    assert torch.allclose(got[..., 0], expected_ir, atol=1e-4) and torch.allclose(got[..., 1], expected_vi, atol=1e-4)
