"""Training data: valid crops, flips and fixed-seed randomness, extra folders, and the guarantee that
no val/test image ever reaches the training loader."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import fusion.learned.data as data
from fusion.learned.data import CropPairs, TrainPair, fit_crop, folder_pairs, make_loader, take_fraction, training_pairs
from fusionbench.images import write_image


def as_train(pairs) -> list[TrainPair]:
    return [TrainPair(p.stem, p.ir, p.vi, p.width, p.height) for p in pairs]


def write_pair(root: Path, stem: str, width: int, height: int, value: int) -> None:
    write_image(root / "ir" / f"{stem}.png", np.full((height, width), value, np.uint8))
    write_image(root / "vi" / f"{stem}.png", np.full((height, width, 3), 255 - value, np.uint8))


def test_no_val_or_test_image_reaches_the_loader(msrs_benchmark, msrs_det20, monkeypatch):
    bench = msrs_benchmark
    # The raw folder holds every benchmark image: as an "extra" folder all of them must be refused.
    extra = folder_pairs(msrs_det20)
    assert len(extra) == 20
    pairs = training_pairs(as_train(bench.pairs("train")), extra,
                           forbidden=[q for s in ("val", "test") for p in bench.pairs(s) for q in (p.ir, p.vi)])
    assert sorted(p.name for p in pairs) == sorted(p.stem for p in bench.pairs("train"))
    read = []
    monkeypatch.setattr(data, "read_ir", lambda path: read.append(Path(path)) or np.zeros((60, 60), np.float32))
    monkeypatch.setattr(data, "read_vi", lambda path: read.append(Path(path)) or np.zeros((60, 60), np.float32))
    loader = make_loader(CropPairs(pairs, crop=49), batch_size=4, workers=0, seed=0)
    for epoch in range(2):
        loader.sampler.set_epoch(epoch)
        for ir, vi in loader:
            assert ir.shape[1:] == vi.shape[1:] == (1, 49, 49)
    held_out = {q.resolve() for s in ("val", "test") for p in bench.pairs(s) for q in (p.ir, p.vi)}
    assert len(read) == 2 * 2 * len(pairs) and not {p.resolve() for p in read} & held_out


def test_crops_flips_and_seeded_randomness(tmp_path):
    root = tmp_path / "extra"
    # A horizontal ramp: the crop's left column tells its position, its direction tells the flip.
    ramp = np.tile(np.arange(120, dtype=np.uint8), (100, 1))
    write_image(root / "ir" / "a.png", ramp)
    write_image(root / "vi" / "a.png", np.dstack([ramp] * 3))
    pairs = folder_pairs(root)
    dataset = CropPairs(pairs, crop=49, seed=3)
    seen = set()
    for epoch in range(12):
        dataset.set_epoch(epoch)
        ir, vi = dataset[0]
        assert ir.shape == vi.shape == (1, 49, 49) and ir.dtype == torch.float32
        assert torch.allclose(ir, vi, atol=1 / 255)  # same crop and flips for both modalities
        row = ir[0, 0]
        seen.add((round(row[0].item() * 255), bool(row[0] > row[-1])))
        dataset.set_epoch(epoch)
        assert torch.equal(dataset[0][0], ir)  # (seed, epoch, index) fixes every random choice
    assert len({start for start, _ in seen}) > 5 and {flipped for _, flipped in seen} == {True, False}
    centre = CropPairs(pairs, crop=49, augment=False)[0][0]
    assert round(centre[0, 0, 0].item() * 255) == (120 - 49) // 2


def test_small_images_are_padded_or_skipped_and_counted(tmp_path):
    write_pair(tmp_path, "big", 64, 60, 10)
    write_pair(tmp_path, "small", 40, 30, 20)
    pairs = folder_pairs(tmp_path)
    kept, small = fit_crop(pairs, 49, "skip")
    assert small == 1 and [p.name.split("/")[1] for p in kept] == ["big"]
    kept, small = fit_crop(pairs, 49, "pad")
    assert small == 1 and len(kept) == 2
    ir, vi = CropPairs(kept, crop=49)[1]
    assert ir.shape == (1, 49, 49) and torch.allclose(ir, torch.full_like(ir, 20 / 255))


def test_fraction_is_a_fixed_seed_subset(tmp_path):
    for i in range(10):
        write_pair(tmp_path, f"p{i}", 16, 16, i)
    pairs = folder_pairs(tmp_path)
    part = take_fraction(pairs, 0.7, seed=0)
    assert len(part) == 7 and part == take_fraction(pairs, 0.7, seed=0)
    assert part != take_fraction(pairs, 0.7, seed=1)
    with pytest.raises(ValueError, match="fraction"):
        take_fraction(pairs, 1.5, seed=0)


def test_bad_pairs_are_named(tmp_path):
    write_pair(tmp_path, "a", 16, 16, 0)
    write_image(tmp_path / "vi" / "a.png", np.zeros((12, 16, 3), np.uint8))
    with pytest.raises(data.ImageError, match="a.png"):
        CropPairs(folder_pairs(tmp_path), crop=13)[0]
    write_image(tmp_path / "ir" / "b.png", np.zeros((16, 16), np.uint8))
    with pytest.raises(data.ImageError, match="b.png: no visible image"):
        folder_pairs(tmp_path)
