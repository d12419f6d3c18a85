"""Image reading conventions, atomic writes and BT.601 colour handling."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from fusion.color import (
    fuse_luminance,
    luminance,
    recolor,
    rgb_to_ycbcr,
    to_uint8,
    ycbcr_to_rgb,
)
from fusionbench.images import ImageError, image_size, read_ir, read_vi, write_image


def test_ycbcr_round_trip_and_bt601_values():
    rng = np.random.default_rng(0)
    rgb = rng.random((8, 9, 3), dtype=np.float32)
    assert np.allclose(ycbcr_to_rgb(rgb_to_ycbcr(rgb)), rgb, atol=1e-5)
    white, red = np.ones((1, 1, 3), np.float32), np.array([[[1.0, 0, 0]]], np.float32)
    assert np.allclose(rgb_to_ycbcr(white)[0, 0], [1.0, 0.5, 0.5], atol=1e-6)
    assert np.allclose(rgb_to_ycbcr(red)[0, 0], [0.299, 0.5 - 0.168736, 1.0], atol=1e-6)


def test_recolor_keeps_visible_chroma_and_grey_stays_grey():
    rng = np.random.default_rng(1)
    vi = rng.random((6, 7, 3), dtype=np.float32) * 0.5 + 0.25
    y = luminance(vi)
    same = recolor(y, vi)
    assert np.abs(same.astype(int) - to_uint8(vi).astype(int)).max() <= 1
    grey = recolor(y, y)
    assert grey.shape == (6, 7, 3) and (grey[..., 0] == grey[..., 2]).all()
    kept_grey = recolor(y, vi, keep_grey=True)
    assert (kept_grey[..., 0] == kept_grey[..., 1]).all()


def test_fuse_luminance_applies_the_rule_to_ir_and_visible_y():
    ir = np.full((4, 4), 0.8, np.float32)
    vi = np.zeros((4, 4, 3), np.float32)
    fused = fuse_luminance(ir, vi, np.maximum)
    assert fused.dtype == np.uint8 and fused.shape == (4, 4, 3)
    assert np.all(fused == 204)  # grey visible chroma (0.5) keeps the result grey: 0.8 * 255


def test_ir_8_and_16_bit_are_normalised(tmp_path: Path):
    eight = np.array([[0, 255], [51, 102]], np.uint8)
    sixteen = (eight.astype(np.uint16) * 257)
    cv2.imwrite(str(tmp_path / "a.png"), eight)
    cv2.imwrite(str(tmp_path / "b.png"), sixteen)
    assert np.allclose(read_ir(tmp_path / "a.png"), eight / 255.0)
    assert np.allclose(read_ir(tmp_path / "b.png"), eight / 255.0)
    assert read_ir(tmp_path / "b.png").dtype == np.float32


def test_visible_is_rgb_order(tmp_path: Path):
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[..., 0] = 255  # red
    write_image(tmp_path / "v.png", rgb)
    vi = read_vi(tmp_path / "v.png")
    assert vi.shape == (2, 3, 3) and np.allclose(vi[..., 0], 1.0) and np.allclose(vi[..., 2], 0.0)
    assert image_size(tmp_path / "v.png") == (3, 2)


@pytest.mark.parametrize("content, problem", [
    (b"", "empty file"),
    (b"this is not an image at all", "not a readable image"),
])
def test_broken_files_name_the_file(tmp_path: Path, content: bytes, problem: str):
    path = tmp_path / "broken.png"
    path.write_bytes(content)
    with pytest.raises(ImageError, match=rf"broken\.png: {problem}"):
        read_ir(path)


def test_truncated_png_and_missing_file(tmp_path: Path):
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8))
    data = good.read_bytes()
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ImageError, match="cut.png"):
        read_vi(truncated)
    with pytest.raises(ImageError, match="missing.png: file not found"):
        read_vi(tmp_path / "missing.png")


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path: Path):
    image = np.full((5, 5, 3), 7, np.uint8)
    write_image(tmp_path / "out" / "x.png", image)
    write_image(tmp_path / "out" / "x.png", image + 1)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["x.png"]
    assert (cv2.imread(str(tmp_path / "out" / "x.png")) == 8).all()


def test_atomic_writes_respect_the_umask(tmp_path):
    import os
    import stat

    from fusionbench.files import atomic_write_text

    old = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        write_image(tmp_path / "b.png", np.zeros((4, 4), np.uint8))
    finally:
        os.umask(old)
    for name in ("a.txt", "b.png"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o640, name
