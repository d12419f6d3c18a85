"""Class-index masks: every way a file can look like a mask without being one is an error naming the
file and the value; palette PNGs are read as their indices; written masks read back unchanged."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from fusionbench.errors import FusionBenchError
from segmentation.masks import (
    MFNET_CLASSES,
    MFNET_PALETTE,
    MaskError,
    dataset_palette,
    generated_palette,
    read_mask,
    write_index_png,
)


def indices(seed: int = 0, shape=(12, 16), n_classes: int = 9) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n_classes, size=shape, dtype=np.uint8)


def palette_png(path: Path, mask: np.ndarray, colours) -> Path:
    image = Image.frombytes("P", (mask.shape[1], mask.shape[0]), mask.tobytes())
    image.putpalette([c for colour in colours for c in colour] + [0] * (768 - 3 * len(colours)))
    image.save(path)
    return path


def test_palette_png_reads_as_indices_not_colours(tmp_path):
    """MSRS/MFNet labels are palette PNGs: the values are the indices, whatever the colours."""
    mask = indices()
    path = palette_png(tmp_path / "p.png", mask, MFNET_PALETTE)
    assert np.array_equal(read_mask(path, 9), mask)
    rgb = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)  # what a colour reader would see instead
    assert rgb.ndim == 3 and not np.array_equal(rgb[..., 0], mask)


def test_grey_and_grey_rgb_masks_read_as_indices(tmp_path):
    mask = indices(1)
    mask[0, 0] = 255  # the ignore value is allowed
    Image.fromarray(mask).save(tmp_path / "grey.png")
    Image.fromarray(np.repeat(mask[..., None], 3, axis=2)).save(tmp_path / "rgb.png")
    for name in ("grey.png", "rgb.png"):
        read = read_mask(tmp_path / name, 9, size=mask.shape)
        assert read.dtype == np.uint8 and np.array_equal(read, mask)


def test_colour_mask_with_a_palette_mapping_converts(tmp_path):
    mask = indices(2)
    Image.fromarray(np.array(MFNET_PALETTE, np.uint8)[mask]).save(tmp_path / "colour.png")
    mapping = {colour: index for index, colour in enumerate(MFNET_PALETTE)}
    assert np.array_equal(read_mask(tmp_path / "colour.png", 9, palette=mapping), mask)


def test_colour_mask_without_a_palette_is_refused(tmp_path):
    mask = indices(3)
    Image.fromarray(np.array(MFNET_PALETTE, np.uint8)[mask]).save(tmp_path / "colour.png")
    with pytest.raises(MaskError, match=r"colour\.png: a colour mask \(e\.g\. colour \(\d+, \d+, \d+\)\) and no "
                                        r"palette"):
        read_mask(tmp_path / "colour.png", 9)


def test_colour_missing_from_the_palette_is_named(tmp_path):
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[1, 1] = (10, 20, 30)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    with pytest.raises(MaskError, match=r"c\.png: colour \(10, 20, 30\) is not in the palette"):
        read_mask(tmp_path / "c.png", 9, palette={(0, 0, 0): 0})


def test_mask_of_another_size_than_its_image(tmp_path):
    Image.fromarray(indices(4, (12, 16))).save(tmp_path / "m.png")
    with pytest.raises(MaskError, match=r"m\.png: the mask is 12x16 \(height x width\) but its image is 480x640"):
        read_mask(tmp_path / "m.png", 9, size=(480, 640))


def test_value_outside_the_classes(tmp_path):
    mask = indices(5)
    mask[2, 3] = 12
    mask[4, 5] = 12
    Image.fromarray(mask).save(tmp_path / "m.png")
    with pytest.raises(MaskError, match=r"m\.png: value 12 \(2 pixels with values 12\) is neither a class index "
                                        r"0\.\.8 nor the ignore value 255"):
        read_mask(tmp_path / "m.png", 9)
    assert read_mask(tmp_path / "m.png", 13)[2, 3] == 12
    assert read_mask(tmp_path / "m.png", 9, ignore=12)[2, 3] == 12  # 12 is then the ignore value


def test_sixteen_bit_value_beyond_uint8_is_refused(tmp_path):
    mask = indices(6).astype(np.uint16)
    mask[0, 0] = 1000
    cv2.imwrite(str(tmp_path / "m16.png"), mask)
    with pytest.raises(MaskError, match=r"m16\.png: value 1000 "):
        read_mask(tmp_path / "m16.png", 9)


def test_binary_mask_is_not_class_indices(tmp_path):
    binary = np.where(indices(7) > 5, 255, 0).astype(np.uint8)
    Image.fromarray(binary).save(tmp_path / "saliency.png")
    with pytest.raises(MaskError, match=r"saliency\.png: holds only the values 0 and 255: it looks like a binary "
                                        r"\(salient-target\) mask, not class indices 0\.\.8"):
        read_mask(tmp_path / "saliency.png", 9)
    only_background = np.zeros((4, 4), np.uint8)
    Image.fromarray(only_background).save(tmp_path / "zeros.png")
    assert not read_mask(tmp_path / "zeros.png", 9).any()  # all one class is a mask, not a binary one


@pytest.mark.parametrize("content, problem", [(b"", "not a readable mask image"),
                                              (b"not an image at all", "not a readable mask image")])
def test_unreadable_file(tmp_path, content, problem):
    (tmp_path / "bad.png").write_bytes(content)
    with pytest.raises(MaskError, match=rf"bad\.png: {problem}"):
        read_mask(tmp_path / "bad.png", 9)


def test_truncated_and_missing_files(tmp_path):
    Image.fromarray(indices(8, (64, 64))).save(tmp_path / "whole.png")
    data = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(MaskError, match=r"cut\.png: not a readable mask image"):
        read_mask(tmp_path / "cut.png", 9)
    with pytest.raises(MaskError, match=r"absent\.png: mask file not found"):
        read_mask(tmp_path / "absent.png", 9)
    assert issubclass(MaskError, FusionBenchError)


def test_class_count_and_ignore_value_are_checked():
    with pytest.raises(MaskError, match="ignore value 3: it must be at least the class count 9"):
        read_mask("unused.png", 9, ignore=3)
    with pytest.raises(MaskError, match="300 classes"):
        read_mask("unused.png", 300)


def test_written_index_png_reads_back_with_its_palette(tmp_path):
    mask = indices(9)
    mask[0, :3] = 255
    write_index_png(tmp_path / "out" / "m.png", mask, dataset_palette(MFNET_CLASSES))
    with Image.open(tmp_path / "out" / "m.png") as image:
        assert image.mode == "P"
        colours = np.array(image.getpalette()[:27]).reshape(9, 3)
    assert np.array_equal(colours, np.array(MFNET_PALETTE))
    assert np.array_equal(read_mask(tmp_path / "out" / "m.png", 9), mask)
    assert list(tmp_path.joinpath("out").iterdir()) == [tmp_path / "out" / "m.png"]  # no temporary left
    with pytest.raises(MaskError, match=r"m\.png: class index 9 has no colour in the 9-colour palette"):
        write_index_png(tmp_path / "m.png", np.full((2, 2), 9, np.uint8), MFNET_PALETTE)


def test_generated_palette_has_distinct_colours():
    colours = generated_palette(40)
    assert colours[0] == (0, 0, 0) and len(set(colours)) == 40
    assert dataset_palette(("background", "road")) == colours[:2]
