"""prepare with segmentation masks: MSRS as distributed (Segmentation_labels/ or SeAFusion's Label/), FMB,
the generic masks/ folder of any layout, and every bad mask refused with its file and value."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fusionbench.benchmark import Benchmark
from fusionbench.images import write_image
from pipelines.prepare import PrepareError, prepare_benchmark
from segmentation.masks import MFNET_CLASSES, MFNET_PALETTE

H, W = 48, 64


def pair(folder_ir, folder_vi, stem, rng):
    write_image(folder_ir / f"{stem}.png", rng.integers(0, 255, (H, W), np.uint8))
    write_image(folder_vi / f"{stem}.png", rng.integers(0, 255, (H, W, 3), np.uint8))


def index_mask(path, values, palette=MFNET_PALETTE):
    """A class-index PNG: a palette image (the indices with these colours), or grey with ``palette=None``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(values.astype(np.uint8))
    if palette is not None:
        image = image.convert("P")
        image.putpalette([c for colour in (*palette, *[(0, 0, 0)] * (256 - len(palette))) for c in colour])
    image.save(path)


def msrs(root, label_dir="Segmentation_labels", per_split=6, seed=0):
    rng = np.random.default_rng(seed)
    truth = {}
    for split, offset in (("train", 0), ("test", 100)):
        for k in range(per_split):
            stem = f"{offset + k:05d}D"
            (root / split / "ir").mkdir(parents=True, exist_ok=True)
            (root / split / "vi").mkdir(parents=True, exist_ok=True)
            pair(root / split / "ir", root / split / "vi", stem, rng)
            values = rng.integers(0, len(MFNET_CLASSES), (H, W))
            values[0, :4] = 255  # ignored pixels
            index_mask(root / split / label_dir / f"{stem}.png", values)
            truth[stem] = values
    return truth


@pytest.mark.parametrize("label_dir", ["Segmentation_labels", "Label"])
def test_msrs_as_distributed_gives_its_split_and_index_masks(tmp_path, label_dir):
    truth = msrs(tmp_path / "MSRS", label_dir)
    bench = prepare_benchmark(tmp_path / "MSRS", tmp_path / "bench", ratios=(0.7, 0.1, 0.2))
    assert bench.manifest["source"]["layout"] == "msrs_segmentation"
    assert bench.label_kinds == ("masks",) and bench.segmentation["classes"] == list(MFNET_CLASSES)
    assert set(bench.stems("test")) == {s for s in truth if s.startswith("001")}  # the official test folder
    for stem, values in truth.items():
        written = np.asarray(Image.open(bench.mask_path(stem)))
        assert np.array_equal(written, values), stem  # indices kept, palette or not; 255 stays ignore
    counts = bench.manifest["counts"]["test"]["mask_pixels"]
    test = np.stack([truth[s] for s in bench.stems("test")])
    assert counts == {name: int((test == k).sum()) for k, name in enumerate(MFNET_CLASSES)}


def test_colour_masks_in_mfnet_palette_are_read_through_it(tmp_path):
    truth = msrs(tmp_path / "MSRS")
    stem = next(iter(truth))
    colour = np.array([*MFNET_PALETTE, *[(255, 255, 255)] * (256 - len(MFNET_PALETTE))], np.uint8)[truth[stem]]
    Image.fromarray(colour).save(tmp_path / "MSRS" / "train" / "Segmentation_labels" / f"{stem}.png")
    bench = prepare_benchmark(tmp_path / "MSRS", tmp_path / "bench")
    assert np.array_equal(np.asarray(Image.open(bench.mask_path(stem))), truth[stem])


def test_fmb_folders(tmp_path):
    rng = np.random.default_rng(1)
    for split in ("train", "test"):
        for k in range(5):
            stem = f"{split}{k:03d}"
            ir, vi = tmp_path / "FMB" / split / "Infrared", tmp_path / "FMB" / split / "Visible"
            ir.mkdir(parents=True, exist_ok=True)
            vi.mkdir(parents=True, exist_ok=True)
            pair(ir, vi, stem, rng)
            index_mask(tmp_path / "FMB" / split / "Label" / f"{stem}.png", rng.integers(0, 15, (H, W)), palette=None)
    bench = prepare_benchmark(tmp_path / "FMB", tmp_path / "bench")
    assert bench.manifest["source"]["layout"] == "fmb" and len(bench.segmentation["classes"]) == 15
    assert all(s.startswith("test") for s in bench.stems("test")) and len(bench.stems("test")) == 5


def generic(root, masks=True, n=8, seed=2):
    rng = np.random.default_rng(seed)
    for folder in ("ir", "vi", "labels"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "labels" / "classes.txt").write_text("person\n")
    for k in range(n):
        pair(root / "ir", root / "vi", f"{k:03d}", rng)
        (root / "labels" / f"{k:03d}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
        if masks:
            index_mask(root / "masks" / f"{k:03d}.png", rng.integers(0, 3, (H, W)), palette=None)
    if masks:
        (root / "masks" / "classes.txt").write_text("background\nroad\nperson\n")


def test_a_generic_layout_with_a_masks_folder_has_both_label_kinds(tmp_path):
    generic(tmp_path / "DATA")
    bench = prepare_benchmark(tmp_path / "DATA", tmp_path / "bench")
    assert bench.label_kinds == ("boxes", "masks") and bench.segmentation["classes"] == ["background", "road", "person"]
    generic(tmp_path / "BOXES", masks=False)
    assert Benchmark(prepare_benchmark(tmp_path / "BOXES", tmp_path / "bench2").root).label_kinds == ("boxes",)


@pytest.mark.parametrize("damage, message", [
    (lambda m: index_mask(m, np.zeros((H + 2, W), int), palette=None), "mask is 50x64 (height x width) but its image is 48x64"),
    (lambda m: index_mask(m, np.full((H, W), 7), palette=None), "7"),
    (lambda m: Image.fromarray(np.dstack([np.full((H, W), v, np.uint8) for v in (10, 200, 30)])).save(m), "colour"),
    (lambda m: index_mask(m, np.where(np.arange(W) < 30, 0, 255)[None].repeat(H, 0), palette=None), "binary"),
    (lambda m: m.write_bytes(b"not a png"), "00"),
    (lambda m: m.unlink(), "no mask 003.png"),
])
def test_every_bad_mask_is_refused_with_its_file(tmp_path, damage, message):
    generic(tmp_path / "DATA")
    mask = tmp_path / "DATA" / "masks" / "003.png"
    damage(mask)
    with pytest.raises(PrepareError) as refused:
        prepare_benchmark(tmp_path / "DATA", tmp_path / "bench")
    text = str(refused.value) + (tmp_path / "bench" / "problems.txt").read_text()
    assert "003" in text and message in text, text


def test_masks_without_classes_are_refused(tmp_path):
    generic(tmp_path / "DATA")
    (tmp_path / "DATA" / "masks" / "classes.txt").unlink()
    with pytest.raises(PrepareError, match="masks without a classes.txt"):
        prepare_benchmark(tmp_path / "DATA", tmp_path / "bench")
