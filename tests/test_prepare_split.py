"""Splits: reproducible from stems and seed alone; scene splits keep near-duplicate frames together."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from pipelines.prepare import PrepareError, prepare_benchmark
from pipelines.prepare.split import group_scenes, leakage, random_split, scene_split, split_sizes

STEMS = [f"frame{i:03d}" for i in range(40)]


@pytest.mark.parametrize("n, expected", [(20, [14, 2, 4]), (24, [17, 2, 5]), (10, [7, 1, 2]), (3, [2, 0, 1])])
def test_split_sizes(n, expected):
    assert split_sizes(n, (0.7, 0.1, 0.2)) == expected


def test_split_sizes_add_up():
    for n in range(1, 60):
        sizes = split_sizes(n, (0.6, 0.15, 0.25))
        assert sum(sizes) == n and all(abs(s - n * r) < 1 for s, r in zip(sizes, (0.6, 0.15, 0.25)))
    with pytest.raises(PrepareError):
        split_sizes(10, (0.7, -0.1, 0.4))


def test_random_split_ignores_input_order_and_follows_seed():
    shuffled = [STEMS[i] for i in np.random.default_rng(123).permutation(len(STEMS))]
    first = random_split(STEMS, (0.7, 0.1, 0.2), seed=0)
    assert random_split(shuffled, (0.7, 0.1, 0.2), seed=0) == first
    assert random_split(list(reversed(STEMS)), (0.7, 0.1, 0.2), seed=0) == first
    other = random_split(STEMS, (0.7, 0.1, 0.2), seed=1)
    assert other != first
    for assignment in (first, other):
        assert [list(assignment.values()).count(s) for s in ("train", "val", "test")] == [28, 4, 8]


def _sequence(root: Path, scenes: int, frames: int, order: list[int] | None = None) -> Path:
    """Generic-layout raw folder of ``scenes`` x ``frames`` frames: frames of one scene are the same
    random picture plus faint noise (near-duplicates), different scenes are unrelated pictures."""
    for folder in ("ir", "vi", "labels"):
        (root / folder).mkdir(parents=True)
    (root / "labels" / "classes.txt").write_text("thing\n")
    rng = np.random.default_rng(7)
    bases = [rng.integers(0, 256, (24, 32, 3)).astype(np.float32) for _ in range(scenes)]
    bases = [cv2.resize(b, (64, 48), interpolation=cv2.INTER_NEAREST) for b in bases]
    items = [(s, f) for s in range(scenes) for f in range(frames)]
    for index in order if order is not None else range(len(items)):
        s, f = items[index]
        noisy = np.clip(bases[s] + rng.normal(0, 2, bases[s].shape), 0, 255).astype(np.uint8)
        stem = f"s{s:02d}_f{f:02d}"
        cv2.imwrite(str(root / "ir" / f"{stem}.png"), noisy[..., 0])
        cv2.imwrite(str(root / "vi" / f"{stem}.png"), noisy)
        (root / "labels" / f"{stem}.txt").write_text("0 0.5 0.5 0.25 0.25\n")
    return root


def _scene_of(stem: str) -> str:
    return stem.split("_")[0]


def test_scene_split_and_leakage_on_known_near_duplicates(tmp_path):
    raw = _sequence(tmp_path / "raw", scenes=10, frames=4)
    random_bench = prepare_benchmark(raw, tmp_path / "random", split_by="random")
    scene_bench = prepare_benchmark(raw, tmp_path / "scene", split_by="scene")

    # Expected leakage of the random split, from the known scenes: a test frame leaks when another
    # frame of its scene is in train.
    train_scenes = {_scene_of(s) for s in random_bench.stems("train")}
    expected = sum(_scene_of(s) in train_scenes for s in random_bench.stems("test"))
    assert expected > 0
    leak = random_bench.manifest["leakage"]
    assert leak["random"] == {"test": 8, "near_duplicates_in_train": expected}

    # The scene split finds the 10 scenes, keeps each whole, and leaks nothing.
    assert scene_bench.manifest["split"]["scenes"] == 10
    splits_of_scene: dict[str, set[str]] = {}
    for pair in scene_bench.pairs():
        splits_of_scene.setdefault(_scene_of(pair.stem), set()).add(pair.split)
    assert all(len(splits) == 1 for splits in splits_of_scene.values())
    assert [len(scene_bench.stems(s)) for s in ("train", "val", "test")] == [28, 4, 8]
    assert scene_bench.manifest["leakage"]["scene"]["near_duplicates_in_train"] == 0
    # Both strategies are reported whichever is used.
    assert scene_bench.manifest["leakage"]["random"] == leak["random"]


def test_same_files_in_another_order_give_identical_split_files(tmp_path):
    forward = _sequence(tmp_path / "a", scenes=6, frames=3)
    backward = _sequence(tmp_path / "b", scenes=6, frames=3, order=list(range(17, -1, -1)))
    for strategy in ("random", "scene"):
        one = prepare_benchmark(forward, tmp_path / f"a_{strategy}", split_by=strategy, seed=5)
        two = prepare_benchmark(backward, tmp_path / f"b_{strategy}", split_by=strategy, seed=5)
        for split in ("train", "val", "test"):
            name = f"splits/{split}.txt"
            assert (one.root / name).read_bytes() == (two.root / name).read_bytes()


def test_other_seed_gives_other_split(tmp_path):
    raw = _sequence(tmp_path / "raw", scenes=6, frames=3)
    zero = prepare_benchmark(raw, tmp_path / "zero", seed=0)
    one = prepare_benchmark(raw, tmp_path / "one", seed=1)
    assert zero.manifest["split"]["seed"] == 0 and one.manifest["split"]["seed"] == 1
    assert zero.stems("test") != one.stems("test")
    assert sorted(zero.stems("train") + zero.stems("val") + zero.stems("test")) == \
        sorted(one.stems("train") + one.stems("val") + one.stems("test"))


def test_group_scenes_threshold():
    thumbs = np.array([[0.0, 0.0], [0.01, 0.0], [0.5, 0.5], [0.52, 0.5], [0.0, 0.0]], np.float32)
    assert group_scenes(thumbs, 0.04) == [0, 0, 1, 1, 2]
    assert group_scenes(thumbs, 0.001) == [0, 1, 2, 3, 4]
    assert group_scenes(thumbs[:1], 0.04) == [0]


def test_scene_split_keeps_groups_and_leakage_counts_nearest_train():
    stems = [f"{i:02d}" for i in range(20)]
    scenes = [i // 4 for i in range(20)]
    assignment = scene_split(stems, scenes, (0.6, 0.2, 0.2), seed=3)
    for scene in range(5):
        assert len({assignment[s] for s, g in zip(stems, scenes) if g == scene}) == 1
    thumbs = np.array([[g, 0.0] for g in scenes], np.float32)   # frames of a scene are identical
    assert leakage(assignment, stems, thumbs, 0.04) == 0
    mixed = {s: ("test" if i % 4 == 0 else "train") for i, s in enumerate(stems)}
    assert leakage(mixed, stems, thumbs, 0.04) == 5


def test_scene_split_too_few_scenes_is_an_error(tmp_path):
    raw = _sequence(tmp_path / "raw", scenes=2, frames=5)
    with pytest.raises(PrepareError, match="scene split left test empty"):
        prepare_benchmark(raw, tmp_path / "bench", split_by="scene")
