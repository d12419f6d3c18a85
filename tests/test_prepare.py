"""``prepare`` end to end: the synthetic sample and the real MSRS pairs, outputs and the command."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from pycocotools.coco import COCO

from fusionbench.benchmark import M3FD_CLASSES, SPLITS, Benchmark
from pipelines.cli import cli
from pipelines.prepare import prepare_benchmark


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _check_benchmark(bench: Benchmark) -> None:
    """Everything the folder contract promises, cross-checked between the files."""
    stems = {split: bench.stems(split) for split in SPLITS}
    assert all(s == sorted(s) for s in stems.values())
    assert sorted(sum(stems.values(), [])) == sorted(p["stem"] for p in bench.manifest["pairs"])
    for split in SPLITS:
        coco = COCO(str(bench.coco_path(split)))
        assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == bench.classes
        assert [c["id"] for c in coco.dataset["categories"]] == list(range(1, len(bench.classes) + 1))
        assert [img["file_name"] for img in coco.dataset["images"]] == [f"{s}.png" for s in stems[split]]
        assert [img["id"] for img in coco.dataset["images"]] == list(range(1, len(stems[split]) + 1))
        assert {p.name for p in bench.labels_dir(split).iterdir()} == {f"{s}.txt" for s in stems[split]}
        per_class = dict.fromkeys(bench.classes, 0)
        for image_id, stem in enumerate(stems[split], 1):
            pair = bench.pair(stem)
            assert pair.split == split and pair.ir.is_file() and pair.vi.is_file()
            yolo = [line.split() for line in (bench.labels_dir(split) / f"{stem}.txt").read_text().splitlines()]
            anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
            assert len(yolo) == len(anns)
            for (cls, cx, cy, w, h), ann in zip(yolo, anns):
                per_class[bench.classes[int(cls)]] += 1
                assert ann["category_id"] == int(cls) + 1
                x, y, bw, bh = ann["bbox"]
                assert (x + bw / 2) / pair.width == pytest.approx(float(cx), abs=2e-6)
                assert (y + bh / 2) / pair.height == pytest.approx(float(cy), abs=2e-6)
                assert bw / pair.width == pytest.approx(float(w), abs=2e-6)
                assert 0 <= x and x + bw <= pair.width + 1e-3 and 0 <= y and y + bh <= pair.height + 1e-3
        assert bench.manifest["counts"][split]["boxes"] == per_class
        assert bench.manifest["counts"][split]["pairs"] == len(stems[split])
    first = bench.manifest["pairs"][0]
    assert hashlib.sha256(Path(first["ir"]).read_bytes()).hexdigest() == first["ir_sha256"]
    assert hashlib.sha256(Path(first["vi"]).read_bytes()).hexdigest() == first["vi_sha256"]


def test_sample_benchmark(sample_benchmark, sample_raw):
    _check_benchmark(sample_benchmark)
    manifest = sample_benchmark.manifest
    assert sample_benchmark.classes == list(M3FD_CLASSES)
    assert manifest["source"] == {"path": str(sample_raw.resolve()), "layout": "m3fd",
                                  "annotations": str((sample_raw / "Annotation").resolve())}
    assert [manifest["counts"][s]["pairs"] for s in SPLITS] == [17, 2, 5]
    assert manifest["split"]["strategy"] == "random" and manifest["split"]["seed"] == 0
    assert manifest["tool"]["name"] == "fusionbench" and manifest["tool"]["version"]
    # The sample is made of short video scenes: a random split leaks near-duplicates, a scene split does not.
    assert manifest["leakage"]["random"]["near_duplicates_in_train"] > 0
    assert manifest["leakage"]["scene"]["near_duplicates_in_train"] == 0
    info = json.loads((sample_raw / "sample.json").read_text())
    assert manifest["split"]["scenes"] == len({f["scene"] for f in info["frames"].values()})
    # The exact boxes of the generator come through VOC XML into COCO unchanged (pixel-edge corners).
    coco = COCO(str(sample_benchmark.coco_path("test")))
    for image_id, stem in enumerate(sample_benchmark.stems("test"), 1):
        drawn = [[x1, y1, x2 - x1, y2 - y1] for x1, y1, x2, y2 in (o["box"] for o in info["frames"][stem]["objects"])]
        assert [a["bbox"] for a in coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))] == drawn


def test_msrs_benchmark(msrs_benchmark, msrs_det20):
    _check_benchmark(msrs_benchmark)
    assert msrs_benchmark.classes == ["person", "bicycle", "car"]
    assert msrs_benchmark.manifest["source"]["annotations"] == str((msrs_det20 / "labels" / "fusion").resolve())
    assert [len(msrs_benchmark.stems(s)) for s in SPLITS] == [14, 2, 4]
    assert all((p.width, p.height) == (640, 480) for p in msrs_benchmark.pairs())
    # MSRS fusion labels use double spaces; they come out as single-space YOLO lines.
    stem = msrs_benchmark.stems("train")[0]
    source = (msrs_det20 / "labels" / "fusion" / f"{stem}.txt").read_text().split()
    written = (msrs_benchmark.labels_dir("train") / f"{stem}.txt").read_text().split()
    assert [float(v) for v in written] == pytest.approx([float(v) for v in source], abs=1e-6)


def test_msrs_label_variant(msrs_det20, tmp_path):
    bench = prepare_benchmark(msrs_det20, tmp_path / "bench", labels="infrared")
    assert bench.manifest["source"]["annotations"].endswith("labels/infrared")
    infrared_boxes = sum(len(p.read_text().splitlines()) for p in (msrs_det20 / "labels" / "infrared").glob("*.txt"))
    assert sum(sum(c["boxes"].values()) for c in bench.manifest["counts"].values()) == infrared_boxes


def test_rerun_is_byte_identical_and_cleans_old_split(sample_raw, tmp_path):
    out = tmp_path / "bench"
    prepare_benchmark(sample_raw, out, seed=0)
    first = _files(out)
    prepare_benchmark(sample_raw, out, seed=0)
    assert _files(out) == first
    bench = prepare_benchmark(sample_raw, out, seed=1)
    assert _files(out) != first
    for split in SPLITS:   # no label file left behind from the seed-0 split
        assert {p.stem for p in bench.labels_dir(split).iterdir()} == set(bench.stems(split))


def test_prepare_command(sample_raw, tmp_path):
    runner = CliRunner()
    out = tmp_path / "bench"
    args = ["prepare", "-c", "sample", "-s", f"run.root={tmp_path / 'runs'}", "--data", str(sample_raw),
            "--out", str(out), "--seed", "3", "--split-by", "scene"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    bench = Benchmark(out)
    assert bench.manifest["split"]["strategy"] == "scene" and bench.manifest["split"]["seed"] == 3
    assert "test images with a near-duplicate in train: random" in result.output
    assert (tmp_path / "runs" / "sample" / "logs" / "prepare.log").is_file()


def test_prepare_command_reports_bad_files(sample_raw, tmp_path):
    raw = tmp_path / "raw"
    for folder in ("Ir", "Vis", "Annotation"):
        (raw / folder).mkdir(parents=True)
        for path in sorted((sample_raw / folder).iterdir())[:8]:
            (raw / folder / path.name).write_bytes(path.read_bytes())
    (raw / "Annotation" / "00001.xml").write_text("<annotation><object>")
    base = ["prepare", "-s", f"run.root={tmp_path / 'runs'}", "--data", str(raw), "--out", str(tmp_path / "bench")]
    result = CliRunner().invoke(cli, base)
    assert result.exit_code == 2
    assert "00001.xml: XML does not parse" in result.output
    result = CliRunner().invoke(cli, [*base, "--skip-bad"])
    assert result.exit_code == 0, result.output
    assert [s["stem"] for s in Benchmark(tmp_path / "bench").manifest["skipped"]] == ["00001"]


def test_prepare_without_data_uses_the_synthetic_sample(tmp_path):
    result = CliRunner().invoke(cli, ["prepare", "-c", "sample", "-s", f"run.root={tmp_path}", "-s", "sample.pairs=10",
                                      "-s", "sample.width=64", "-s", "sample.height=48"])
    assert result.exit_code == 0, result.output
    bench = Benchmark(tmp_path / "sample" / "benchmark")
    assert bench.manifest["source"]["path"] == str(tmp_path / "sample" / "sample_raw")
    assert [len(bench.stems(s)) for s in SPLITS] == [7, 1, 2]
