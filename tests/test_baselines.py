"""Classical fusers, the source 'methods', the external importer and the registry."""
from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest

from fusion.baselines.external import ExternalFuser
from fusion.baselines.pixel import max_rule, pca_weights
from fusion.baselines.two_scale import box_mean, guided_filter, median3
from fusion.color import luminance, to_uint8
from fusion.engine import load_pair
from fusion.learned.architecture import learned_methods
from fusion.registry import FuserError, available_methods, build_fuser
from fusionbench.images import ImageError, read_ir, read_vi

CLASSICAL = ("average", "max", "pca", "laplacian", "dwt", "gff", "tif")
MULTISCALE = ("laplacian", "dwt", "gff", "tif")
REAL_STEMS = ("00055D", "00004N")  # one day, one night scene


@pytest.fixture(scope="module")
def real_pairs(msrs_det20: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(read_ir(msrs_det20 / "ir" / f"{s}.png"), read_vi(msrs_det20 / "vi" / f"{s}.png")) for s in REAL_STEMS]


def test_registry_lists_every_method_and_rejects_unknown_ones():
    methods = available_methods()
    for name in ("ir", "vi", *CLASSICAL, "external", *learned_methods()):
        assert name in methods
    with pytest.raises(FuserError, match="unknown fusion method 'nope'"):
        build_fuser("nope")
    with pytest.raises(FuserError, match="bad options"):
        build_fuser("laplacian", depth=3)
    with pytest.raises(FuserError, match="unknown discrete wavelet 'db99'"):
        build_fuser("dwt", wavelet="db99")


def test_learned_method_needs_an_existing_checkpoint(tmp_path: Path):
    with pytest.raises(FuserError, match="missing.pt: checkpoint not found"):
        build_fuser("s4fusion_wo_pm", weights=tmp_path / "missing.pt")


@pytest.mark.parametrize("name", ("ir", "vi", *CLASSICAL))
def test_every_fuser_on_real_pairs_gives_uint8_rgb_of_the_input_size(name: str, real_pairs):
    fuser = build_fuser(name)
    for ir, vi in real_pairs:
        for visible in (vi, luminance(vi)):  # colour and grey visible images
            fused = fuser(ir, visible)
            assert fused.dtype == np.uint8 and fused.shape == (*ir.shape, 3)
            assert fused.std() > 1.0  # a real image, not a constant


def test_every_fuser_on_the_sample(sample_benchmark):
    for pair in sample_benchmark.pairs("test")[:2]:
        ir, vi = load_pair(pair)
        for name in ("ir", "vi", *CLASSICAL):
            fused = build_fuser(name)(ir, vi)
            assert fused.dtype == np.uint8 and fused.shape == (pair.height, pair.width, 3), name


def test_sources_are_the_inputs(real_pairs):
    ir, vi = real_pairs[0]
    assert np.array_equal(build_fuser("ir")(ir, vi), np.repeat(to_uint8(ir)[..., None], 3, axis=2))
    assert np.array_equal(build_fuser("vi")(ir, vi), to_uint8(vi))


@pytest.mark.parametrize("name", ("average", "pca", *MULTISCALE))
def test_identical_inputs_reconstruct_the_input_to_one_grey_level(name: str, real_pairs):
    for _, vi in real_pairs:
        fused = build_fuser(name)(luminance(vi), vi)
        assert np.abs(fused.astype(int) - to_uint8(vi).astype(int)).max() <= 1


def test_choose_max_is_at_least_both_sources(real_pairs):
    for ir, vi in real_pairs:
        y = luminance(vi)
        assert (max_rule(ir, y) >= ir).all() and (max_rule(ir, y) >= y).all()
        fused_y = build_fuser("max")(ir, y)[..., 0].astype(int)  # grey visible: the output is the luminance
        assert (fused_y >= to_uint8(ir).astype(int)).all() and (fused_y >= to_uint8(y).astype(int)).all()


def test_pca_weights_favour_the_source_with_more_variance():
    rng = np.random.default_rng(0)
    base = rng.random((60, 80)).astype(np.float32)
    strong, weak = base, 0.5 + 0.2 * (base - 0.5) + 0.01 * rng.standard_normal(base.shape).astype(np.float32)
    p_strong, p_weak = pca_weights(strong, weak)
    assert p_strong + p_weak == pytest.approx(1.0) and p_strong > 0.7
    # The principal axis of [[var a, cov], [cov, var b]] computed by hand for a 2x2 matrix:
    a, b = np.var(strong, ddof=1), np.var(weak, ddof=1)
    c = np.cov(strong.ravel(), weak.ravel())[0, 1]
    largest = (a + b) / 2 + np.sqrt(((a - b) / 2) ** 2 + c * c)
    v = np.array([c, largest - a])
    assert p_strong == pytest.approx(v[0] / v.sum(), rel=1e-6)
    assert pca_weights(np.full((4, 4), 0.2, np.float32), np.full((4, 4), 0.7, np.float32)) == (0.5, 0.5)


def _stripes(shape: tuple[int, int], vertical: bool) -> np.ndarray:
    """0.5 +- 0.3 stripes (period 8) on the left half when ``vertical`` else on the right half; flat elsewhere."""
    height, width = shape
    image = np.full(shape, 0.5, np.float32)
    if vertical:
        image[:, : width // 2] += 0.3 * np.sign(np.sin(np.arange(width // 2) * np.pi / 4))[None, :]
    else:
        image[:, width // 2 :] += 0.3 * np.sign(np.sin(np.arange(height) * np.pi / 4))[:, None]
    return image


@pytest.mark.parametrize("name", MULTISCALE)
def test_detail_rules_keep_the_detail_of_whichever_source_has_it(name: str):
    ir, y = _stripes((96, 128), vertical=True), _stripes((96, 128), vertical=False)
    left, right = np.s_[8:-8, 8:48], np.s_[8:-8, 80:120]
    fused = luminance(build_fuser(name)(ir, y).astype(np.float32) / 255)
    assert fused[left].std() > 0.8 * ir[left].std()
    assert fused[right].std() > 0.8 * y[right].std()
    averaged = luminance(build_fuser("average")(ir, y).astype(np.float32) / 255)
    assert averaged[left].std() < 0.6 * ir[left].std()  # the plain average halves it: the check discriminates


def test_guided_filter_properties():
    rng = np.random.default_rng(0)
    image = rng.random((40, 50), dtype=np.float32)
    # A guide filtering itself with a tiny eps preserves it (He et al.: edge-preserving, a ~ 1).
    assert np.abs(guided_filter(image, image, 4, 1e-8) - image).max() < 1e-3
    # With a constant guide the filter is the mean of the mean (a = 0, b = mean p).
    flat = np.full_like(image, 0.3)
    assert np.allclose(guided_filter(flat, image, 2, 0.1), box_mean(box_mean(image, 2), 2), atol=1e-5)
    # Box mean clips the window at the borders: a corner averages the in-image part only.
    assert np.isclose(box_mean(image, 3)[0, 0], image[:4, :4].mean(), atol=1e-6)


def test_median3_is_the_zero_padded_median():
    from scipy.ndimage import median_filter

    image = np.random.default_rng(1).random((33, 47), dtype=np.float32)
    assert np.array_equal(median3(image), median_filter(image, size=3, mode="constant", cval=0.0))


def test_classical_fusers_pickle_for_worker_processes(real_pairs):
    ir, vi = real_pairs[0]
    for name in ("ir", "vi", *CLASSICAL):
        fuser = build_fuser(name)
        assert np.array_equal(pickle.loads(pickle.dumps(fuser))(ir[:64, :64], vi[:64, :64]),
                              fuser(ir[:64, :64], vi[:64, :64]))


# --- external importer ---

class _Pair:
    def __init__(self, stem: str, vi: Path, width: int, height: int):
        self.stem, self.vi, self.width, self.height = stem, vi, width, height


def _external_case(tmp_path: Path, msrs_det20: Path, result: np.ndarray, name: str = "00055D.png"):
    folder = tmp_path / "results"
    folder.mkdir()
    cv2.imwrite(str(folder / name), result)
    vi_path = msrs_det20 / "vi" / "00055D.png"
    return folder, _Pair("00055D", vi_path, 640, 480), read_vi(vi_path)


def test_external_grey_result_gets_the_visible_chroma_unless_kept_grey(tmp_path: Path, msrs_det20: Path):
    grey = (read_ir(msrs_det20 / "ir" / "00055D.png") * 255).astype(np.uint8)
    folder, pair, vi = _external_case(tmp_path, msrs_det20, grey)
    coloured = build_fuser("external", folder=folder).fuse_pair(pair)
    ycc_out = cv2.cvtColor(coloured, cv2.COLOR_RGB2YCrCb).astype(int)
    ycc_vi = cv2.cvtColor(to_uint8(vi), cv2.COLOR_RGB2YCrCb).astype(int)
    unclipped = (coloured > 5).all(axis=2) & (coloured < 250).all(axis=2)  # out-of-gamut colours clip
    assert unclipped.mean() > 0.2
    assert np.abs(ycc_out[..., 0] - grey.astype(int))[unclipped].max() <= 1  # luminance: the imported image
    assert np.abs(ycc_out[..., 1:] - ycc_vi[..., 1:])[unclipped].max() <= 2  # chroma is the visible one
    kept = build_fuser("external", folder=folder, keep_grey=True).fuse_pair(pair)
    assert np.array_equal(kept, np.repeat(grey[..., None], 3, axis=2))


def test_external_colour_result_is_kept_and_three_equal_channels_count_as_grey(tmp_path: Path, msrs_det20: Path):
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    folder, pair, _ = _external_case(tmp_path, msrs_det20, colour)
    assert np.array_equal(build_fuser("external", folder=folder).fuse_pair(pair), colour[..., ::-1])
    grey3 = np.repeat(colour[..., :1], 3, axis=2)
    cv2.imwrite(str(folder / "00055D.png"), grey3)
    recoloured = build_fuser("external", folder=folder).fuse_pair(pair)
    assert not (recoloured[..., 0] == recoloured[..., 1]).all()


def test_external_reports_missing_wrong_size_and_duplicate_files(tmp_path: Path, msrs_det20: Path):
    folder, pair, _ = _external_case(tmp_path, msrs_det20, np.zeros((48, 64), np.uint8))
    fuser = build_fuser("external", folder=folder)
    with pytest.raises(ImageError, match=r"00055D.png: size 64x48, but pair '00055D' is 640x480"):
        fuser.fuse_pair(pair)
    with pytest.raises(ImageError, match="no fused image for '00004N'"):
        fuser.fuse_pair(_Pair("00004N", pair.vi, 640, 480))
    (folder / "sub").mkdir()
    cv2.imwrite(str(folder / "sub" / "00055D.jpg"), np.zeros((4, 4), np.uint8))
    with pytest.raises(FuserError, match="two fused images for '00055D'"):
        build_fuser("external", folder=folder)
    with pytest.raises(FuserError, match="not found"):
        build_fuser("external", folder=tmp_path / "absent")
    assert isinstance(fuser, ExternalFuser)
