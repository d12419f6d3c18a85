"""Published split files in (plain lists, TarDAL's scenario.json) and out (export-split), on real files."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from fusionbench.benchmark import SPLITS, Benchmark
from pipelines.cli import cli
from pipelines.prepare import PrepareError, prepare_benchmark
from pipelines.prepare.split_files import normalise

W, H = 64, 48
FRAMES, PER_SCENE = 12, 4   # three "video" scenes of four near-identical frames each


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    """M3FD as distributed, 12 frames 00000-00011; frames of one scene differ by +-1 grey level."""
    root = tmp_path_factory.mktemp("m3fd") / "M3FD_Detection"
    for folder in ("ir", "vi", "Annotation"):
        (root / folder).mkdir(parents=True)
    for i in range(FRAMES):
        rng = np.random.default_rng(i // PER_SCENE)
        ir, vi = rng.integers(20, 235, (H, W), dtype=np.uint8), rng.integers(20, 235, (H, W, 3), dtype=np.uint8)
        step = np.random.default_rng(100 + i).integers(-1, 2, (H, W), dtype=np.int16)
        cv2.imwrite(str(root / "ir" / f"{i:05d}.png"), (ir + step).astype(np.uint8))
        cv2.imwrite(str(root / "vi" / f"{i:05d}.png"), (vi + step[..., None]).astype(np.uint8))
        (root / "Annotation" / f"{i:05d}.xml").write_text(
            "<annotation><object><name>Car</name><bndbox><xmin>3</xmin><ymin>4</ymin><xmax>30</xmax>"
            "<ymax>20</ymax></bndbox></object></annotation>")
    return root.parent


def _lists(folder: Path, **splits: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, text in splits.items():
        (folder / f"{split}.txt").write_bytes(text.encode())
    return folder


def _refusal(raw: Path, tmp_path: Path, files, **options) -> str:
    with pytest.raises(PrepareError) as caught:
        prepare_benchmark(raw, tmp_path / "refused", split_files=files, **options)
    assert not (tmp_path / "refused" / "manifest.json").exists()
    return str(caught.value)


def test_normalisation():
    assert {normalise(n) for n in ("00012", "12", "00012.png", "M3FD_00012.PNG", "ir/00012.jpg",
                                   "C:\\data\\m3fd_012.xml", " 00012\r")} == {"12"}
    assert normalise("190001.jpg") == "190001" and normalise("00004N.png") == "00004N"


def test_published_lists_with_crlf_suffixes_prefixes_padding_and_comments(raw, tmp_path):
    train = "".join(f"M3FD_{i:05d}.png\r\n" for i in range(0, 6)) + "\r\n# scene 2 below\r\n" + "".join(
        f"{i}\r\n" for i in range(6, 8))
    test = "".join(f"ir/{i:05d}.jpg\n" for i in range(8, 12))
    lists = _lists(tmp_path / "lists", train=train, test=test)
    bench = prepare_benchmark(raw, tmp_path / "bench", split_files=[lists], ratios=(0.7, 0.1, 0.2), seed=0)
    split = bench.manifest["split"]
    assert split["strategy"] == "file"
    assert bench.stems("test") == [f"{i:05d}" for i in range(8, 12)]
    # no val given: round(8 * 0.1 / 0.8) = 1 train pair moved to val, recorded
    assert len(bench.stems("val")) == 1 and len(bench.stems("train")) == 7
    assert split["val_from_train"]["pairs"] == 1
    assert {f["path"]: f["sha256"] for f in split["files"]} == {
        str((lists / n).resolve()): hashlib.sha256((lists / n).read_bytes()).hexdigest() for n in ("train.txt", "test.txt")}
    # the leakage table covers the imported split: scene 2 (frames 8-11) is wholly in test -> no leak
    assert bench.manifest["leakage"]["file"] == {"test": 4, "near_duplicates_in_train": 0}


def test_leakage_of_an_imported_split_counts_scene_neighbours(raw, tmp_path):
    lists = _lists(tmp_path / "lists", train="".join(f"{i:05d}\n" for i in range(6)),
                   val="00007\n", test="".join(f"{i:05d}\n" for i in (6, 8, 9, 10, 11)))
    bench = prepare_benchmark(raw, tmp_path / "bench", split_files=[lists])
    assert bench.manifest["split"]["val_from_train"] is None
    # frame 6 shares scene 1 (frames 4-7) with train frames 4 and 5: the one test image with a near-duplicate
    assert bench.manifest["leakage"]["file"] == {"test": 5, "near_duplicates_in_train": 1}


def test_every_list_problem_is_named(raw, tmp_path):
    lists = _lists(tmp_path / "lists", train="00000\n00001\n00099\n00002\n00002.png\n",
                   test="00001\n00003\n00004\nM3FD_77\n")
    message = _refusal(raw, tmp_path, [lists])
    assert f"{lists / 'train.txt'}:3: '00099'" in message and f"{lists / 'test.txt'}:4: 'M3FD_77'" in message
    assert "2 name(s) match no pair" in message
    assert f"{lists / 'train.txt'}:5: '00002.png' is twice in train (first at {lists / 'train.txt'}:4)" in message
    assert f"{lists / 'test.txt'}:1: '00001' is in both train and test (first at {lists / 'train.txt'}:2)" in message
    assert "7 pair(s) of the dataset are in no split list" in message and "  - 00011" in message


def test_unlisted_pairs_go_where_the_config_says(raw, tmp_path):
    lists = _lists(tmp_path / "lists", train="".join(f"{i:05d}\n" for i in range(8)), test="00010\n00011\n")
    assert "2 pair(s) of the dataset are in no split list" in _refusal(raw, tmp_path, [lists])
    bench = prepare_benchmark(raw, tmp_path / "bench", split_files=[lists], unlisted="test")
    assert bench.stems("test") == ["00008", "00009", "00010", "00011"]
    assert bench.manifest["split"]["unlisted"] == {"split": "test", "pairs": ["00008", "00009"]}


def test_tardal_scenario_file(raw, tmp_path):
    scenario = tmp_path / "meta" / "scenario.json"
    scenario.parent.mkdir()
    scenario.write_text(json.dumps([
        {"name": "road", "scene": [{"name": "a", "mode": "train", "range": [{"min": 0, "max": 3}, {"min": 8, "max": 9}]},
                                   {"name": "b", "mode": "val", "range": [{"min": 4, "max": 7}]}]},
        {"name": "campus", "scene": [{"name": "c", "mode": "train", "range": [{"min": 10, "max": 11}]}]}]))
    bench = prepare_benchmark(raw, tmp_path / "bench", split_files=[scenario], ratios=(0.7, 0.1, 0.2))
    assert bench.stems("test") == ["00004", "00005", "00006", "00007"]
    assert sorted(bench.stems("train") + bench.stems("val")) == [f"{i:05d}" for i in (0, 1, 2, 3, 8, 9, 10, 11)]
    assert bench.manifest["split"]["files"][0]["splits"] == ["test", "train"]

    scenario.write_text(json.dumps([{"name": "road", "scene": [{"name": "a", "mode": "holdout", "range": []}]}]))
    assert "scene 'a' of 'road' has mode 'holdout'" in _refusal(raw, tmp_path, [scenario])
    scenario.write_text(json.dumps({"scenes": []}))
    assert f"{scenario}: not a TarDAL scenario file" in _refusal(raw, tmp_path, [scenario])


def test_split_file_names_and_strategy_are_checked(raw, tmp_path):
    other = tmp_path / "holdout.txt"
    other.write_text("00001\n")
    assert f"{other}: a split file must be named train.txt, val.txt or test.txt" in _refusal(raw, tmp_path, [other])
    lists = _lists(tmp_path / "lists", test="00001\n")
    assert "split files" in _refusal(raw, tmp_path, [lists], split_by="random")
    with pytest.raises(PrepareError, match="split strategy 'file' needs split files"):
        prepare_benchmark(raw, tmp_path / "bench", split_by="file")


def test_round_trip_export_then_prepare_gives_byte_identical_lists(raw, tmp_path):
    runner = CliRunner()
    first, second, exported = tmp_path / "first", tmp_path / "second", tmp_path / "published"
    prepare_benchmark(raw, first, split_by="scene", seed=1)
    result = runner.invoke(cli, ["export-split", "--benchmark", str(first), "--out", str(exported)])
    assert result.exit_code == 0, result.output
    originals = {s: (first / "splits" / f"{s}.txt").read_bytes() for s in SPLITS}
    assert {s: (exported / f"{s}.txt").read_bytes() for s in SPLITS} == originals
    sums = (exported / "SHA256SUMS").read_text().splitlines()
    assert sums == [f"{hashlib.sha256(originals[s]).hexdigest()}  {s}.txt" for s in SPLITS]

    result = runner.invoke(cli, ["prepare", "--data", str(raw), "--out", str(second), "--split-file", str(exported),
                                 "-s", f"run.root={tmp_path / 'runs'}"])
    assert result.exit_code == 0, result.output
    assert "(file split used)" in result.output
    assert {s: (second / "splits" / f"{s}.txt").read_bytes() for s in SPLITS} == originals
    assert Benchmark(second).manifest["split"]["strategy"] == "file"

    (exported / "test.txt").write_text((exported / "test.txt").read_text() + "00000\n")
    message = _refusal(raw, tmp_path, [exported])
    assert f"{exported / 'test.txt'}: sha256" in message and "changed after it was exported" in message
