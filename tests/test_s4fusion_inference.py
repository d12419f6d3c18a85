"""The learned-fuser inference API with S4Fusion on real MSRS crops: sizes, colour, batching, input types, determinism."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from fusion.color import rgb_to_ycbcr
from fusion.learned.checkpoint import save_checkpoint
from fusion.learned.inference import LearnedFuser, to_float_image
from fusion.s4fusion.architecture import S4FUSION
from fusion.s4fusion.model import S4Fusion, S4FusionConfig
from fusionbench.images import read_ir, read_vi

SMALL = S4FusionConfig(dims=(16, 32, 64), d_state=4, d_state_fusion=6, fusion_depth=1)  # fast on 2 cores


@pytest.fixture(scope="module")
def fuser() -> LearnedFuser:
    torch.manual_seed(0)
    return LearnedFuser(S4Fusion(SMALL), S4FUSION, SMALL, device="cpu", max_batch=4)  # so that batching is exercised


@pytest.fixture(scope="module")
def pair(msrs_det20):
    stem = sorted((msrs_det20 / "ir").iterdir())[0].name
    ir, vi = read_ir(msrs_det20 / "ir" / stem), read_vi(msrs_det20 / "vi" / stem)
    return ir[200:230, 300:343], vi[200:230, 300:343]  # 30x43: not a valid size, so padded


def test_real_pair_fuses_to_uint8_rgb_of_the_input_size_deterministically(fuser, pair):
    ir, vi = pair
    out = fuser(ir, vi)
    assert out.dtype == np.uint8 and out.shape == (30, 43, 3)
    assert np.array_equal(out, fuser(ir, vi))
    # The fused luminance replaces Y; the visible chroma is kept (up to uint8 rounding and clipping).
    chroma_out, chroma_vi = rgb_to_ycbcr(out / 255.0)[..., 1:], rgb_to_ycbcr(vi)[..., 1:]
    assert np.median(np.abs(chroma_out - chroma_vi)) < 0.01
    grey = fuser(ir, vi.mean(axis=2))
    assert np.array_equal(grey[..., 0], grey[..., 2])


def test_batches_match_single_pairs(fuser, pair):
    ir, vi = pair
    pairs = [(ir, vi), (ir[:20, :27], vi[:20, :27]), (ir[::-1].copy(), vi[::-1].copy())]
    batched = fuser.fuse_batch(pairs)
    for (a, b), out in zip(pairs, batched):
        assert out.shape == a.shape + (3,)
        assert np.abs(out.astype(int) - fuser(a, b).astype(int)).max() <= 1


def test_input_types_are_normalised(fuser, pair):
    ir, vi = pair
    ir8, vi8 = np.rint(ir * 255).astype(np.uint8), np.rint(vi * 255).astype(np.uint8)
    ir16 = ir8.astype(np.uint16) * 257  # the same grey levels as 16-bit
    assert np.allclose(to_float_image(ir16), to_float_image(ir8), atol=1e-6)
    assert np.allclose(to_float_image(Image.fromarray(ir16)), to_float_image(ir8), atol=1e-6)
    assert np.array_equal(to_float_image(torch.from_numpy(vi8).permute(2, 0, 1)), to_float_image(vi8))
    reference = fuser(ir8.astype(np.float32) / 255, vi8.astype(np.float32) / 255)
    assert np.array_equal(fuser(Image.fromarray(ir8), Image.fromarray(vi8)), reference)
    assert np.array_equal(fuser(ir16, torch.from_numpy(vi8)), reference)
    with pytest.raises(ValueError, match="infrared.*\\[0, 1\\]"):
        fuser(ir * 255, vi)
    with pytest.raises(ValueError, match="sizes differ"):
        fuser(ir[:-1], vi)


def test_from_checkpoint_and_amp_only_on_cuda(tmp_path, pair):
    torch.manual_seed(1)
    model = S4Fusion(SMALL)
    save_checkpoint(tmp_path / "m.pt", S4FUSION, SMALL, model)
    ir, vi = pair
    assert np.array_equal(LearnedFuser.from_checkpoint(tmp_path / "m.pt", device="cpu")(ir, vi),
                          LearnedFuser(model, S4FUSION, SMALL, device="cpu")(ir, vi))
    with pytest.raises(ValueError, match="CUDA"):
        LearnedFuser(model, S4FUSION, SMALL, device="cpu", amp="bf16")
