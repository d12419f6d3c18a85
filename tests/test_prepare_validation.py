"""Every bad-input case of ``prepare``, each with real broken files in a temporary raw folder."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from fusionbench.benchmark import M3FD_CLASSES
from pipelines.prepare import PrepareError, prepare_benchmark
from pipelines.prepare.layouts import open_layout

W, H = 40, 32   # prepare refuses images under 32x32


def _image(seed: int, colour: bool, width: int = W, height: int = H, dtype=np.uint8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max
    return rng.integers(0, top, (height, width, 3) if colour else (height, width), dtype=dtype)


def _voc(objects: list[tuple[str, float, float, float, float]]) -> str:
    items = "".join(
        f"<object><name>{name}</name><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
        f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>" for name, x1, y1, x2, y2 in objects)
    return f"<annotation><size><width>{W}</width><height>{H}</height></size>{items}</annotation>"


def _m3fd(root: Path, count: int = 10, folders: tuple[str, str, str] = ("Ir", "Vis", "Annotation")) -> Path:
    """A valid M3FD-layout raw folder: ``count`` pairs, one Car box each."""
    ir_dir, vi_dir, ann_dir = (root / name for name in folders)
    for folder in (ir_dir, vi_dir, ann_dir):
        folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        stem = f"{i:05d}"
        cv2.imwrite(str(ir_dir / f"{stem}.png"), _image(2 * i, False))
        cv2.imwrite(str(vi_dir / f"{stem}.png"), _image(2 * i + 1, True))
        (ann_dir / f"{stem}.xml").write_text(_voc([("Car", 5, 6, 20, 18)]))
    return root


def _problems(raw: Path, tmp_path: Path) -> str:
    with pytest.raises(PrepareError) as caught:
        prepare_benchmark(raw, tmp_path / "refused")
    message = str(caught.value)
    assert not (tmp_path / "refused" / "manifest.json").exists()
    listing = (tmp_path / "refused" / "problems.txt").read_text().splitlines()
    assert listing and all(f"  - {line}" in message for line in listing)
    return message


def test_valid_folder_prepares(tmp_path):
    bench = prepare_benchmark(_m3fd(tmp_path / "raw"), tmp_path / "bench")
    assert bench.classes == list(M3FD_CLASSES)
    assert len(bench.pairs()) == 10
    assert bench.manifest["counts"]["train"]["boxes"]["Car"] == 7


def test_truncated_png(tmp_path):
    """Cut at the end (pixels intact, IEND chunk gone) and cut in the middle of the pixel data."""
    raw = _m3fd(tmp_path / "raw")
    end_cut, mid_cut = raw / "Ir" / "00003.png", raw / "Vis" / "00004.png"
    end_cut.write_bytes(end_cut.read_bytes()[:-12])
    mid_cut.write_bytes(mid_cut.read_bytes()[: mid_cut.stat().st_size // 2])
    message = _problems(raw, tmp_path)
    assert f"{end_cut}: truncated image file" in message
    assert f"{mid_cut}: truncated image file" in message


def test_garbage_bytes(tmp_path):
    raw = _m3fd(tmp_path / "raw")
    path = raw / "Vis" / "00002.png"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    assert f"{path}: not a readable image" in _problems(raw, tmp_path)


def test_empty_file(tmp_path):
    raw = _m3fd(tmp_path / "raw")
    path = raw / "Vis" / "00002.png"
    path.write_bytes(b"")
    assert f"{path}: empty file" in _problems(raw, tmp_path)


def test_size_mismatch(tmp_path):
    raw = _m3fd(tmp_path / "raw")
    cv2.imwrite(str(raw / "Vis" / "00004.png"), _image(0, True, width=W - 2))
    message = _problems(raw, tmp_path)
    assert f"{raw / 'Ir' / '00004.png'}: infrared is {W}x{H} but the visible image 00004.png is {W - 2}x{H}" in message


def test_orphans(tmp_path):
    raw = _m3fd(tmp_path / "raw")
    (raw / "Vis" / "00001.png").unlink()
    (raw / "Ir" / "00002.png").unlink()
    (raw / "Annotation" / "00099.xml").write_text(_voc([]))
    message = _problems(raw, tmp_path)
    assert f"{raw / 'Ir' / '00001.png'}: infrared image without a visible image" in message
    assert f"{raw / 'Vis' / '00002.png'}: visible image without an infrared image" in message
    assert f"{raw / 'Annotation' / '00099.xml'}: annotation without an image pair" in message
    assert message.startswith(f"{raw.resolve()}: 3 problem(s) in 3 pair(s)")


def test_bad_xml(tmp_path):
    raw = _m3fd(tmp_path / "raw")
    path = raw / "Annotation" / "00005.xml"
    path.write_text("<annotation><object><name>Car</name>")
    assert f"{path}: XML does not parse" in _problems(raw, tmp_path)


def test_unknown_class(tmp_path):
    raw = _m3fd(tmp_path / "raw")
    path = raw / "Annotation" / "00006.xml"
    path.write_text(_voc([("Car", 1, 1, 9, 9), ("Tractor", 2, 2, 8, 8)]))
    assert f"{path}: unknown class name(s) ['Tractor']" in _problems(raw, tmp_path)


def test_duplicate_stems(tmp_path):
    raw = _m3fd(tmp_path / "raw")
    cv2.imwrite(str(raw / "Ir" / "00007.jpg"), _image(5, False))
    assert f"{raw / 'Ir'}: duplicate stem '00007' (00007.jpg, 00007.png)" in _problems(raw, tmp_path)


def test_every_problem_reported_at_once_and_skip_bad(tmp_path):
    raw = _m3fd(tmp_path / "raw")
    (raw / "Ir" / "00000.png").write_bytes(b"not an image")
    (raw / "Annotation" / "00001.xml").write_text("<annotation>")
    (raw / "Vis" / "00002.png").unlink()
    message = _problems(raw, tmp_path)
    assert "3 problem(s) in 3 pair(s)" in message
    assert all(stem in message for stem in ("00000.png", "00001.xml", "00002.png"))
    assert "--skip-bad" in message

    bench = prepare_benchmark(raw, tmp_path / "refused", skip_bad=True)
    assert not (tmp_path / "refused" / "problems.txt").exists()    # the listing of the failed run is gone
    skipped = bench.manifest["skipped"]
    assert [s["stem"] for s in skipped] == ["00000", "00001", "00002"]
    assert "XML does not parse" in skipped[1]["problems"][0]
    assert sorted(p.stem for p in bench.pairs()) == [f"{i:05d}" for i in range(3, 10)]


def test_box_outside_is_clipped_and_zero_area_dropped(tmp_path):
    raw = _m3fd(tmp_path / "raw")
    (raw / "Annotation" / "00000.xml").write_text(_voc([   # VOC: 1-based, inclusive
        ("Car", -5, 10, 20, 40),        # outside left and bottom: corners clipped to (0, 9, 20, 32)
        ("People", 11, 10, 10, 20),     # zero width (corners x 10..10): dropped
        ("Bus", 50, 5, 60, 10),         # entirely right of the image: zero area after clipping, dropped
        ("Lamp", 3, 4, 13, 24),         # fine: corners (2, 3, 13, 24)
    ]))
    bench = prepare_benchmark(raw, tmp_path / "bench")
    assert bench.manifest["fixes"] == {"clipped_boxes": 1, "dropped_boxes": 2, "missing_annotations": 0}
    warnings = bench.manifest["warnings"]
    assert len(warnings) == 3 and all(w.startswith(str(raw / "Annotation" / "00000.xml")) for w in warnings)
    pair = bench.pair("00000")
    lines = (bench.labels_dir(pair.split) / "00000.txt").read_text().splitlines()
    assert lines == [f"1 {10 / W:.6f} {20.5 / H:.6f} {20 / W:.6f} {23 / H:.6f}",
                     f"4 {7.5 / W:.6f} {13.5 / H:.6f} {11 / W:.6f} {21 / H:.6f}"]


def test_background_images_kept(tmp_path):
    raw = _m3fd(tmp_path / "raw")
    (raw / "Annotation" / "00000.xml").write_text(_voc([]))
    (raw / "Annotation" / "00001.xml").unlink()
    bench = prepare_benchmark(raw, tmp_path / "bench")
    for stem in ("00000", "00001"):
        pair = bench.pair(stem)
        assert (bench.labels_dir(pair.split) / f"{stem}.txt").read_text() == ""
    assert sum(c["background"] for c in bench.manifest["counts"].values()) == 2
    assert bench.manifest["fixes"]["missing_annotations"] == 1
    assert bench.manifest["warnings"] == [f"{raw / 'Ir' / '00001.png'}: no annotation file in "
                                          f"{raw / 'Annotation'}; kept as a background image"]


def test_formats_case_and_16_bit(tmp_path):
    """Folder names in any case (and Annotations/ for Annotation/), jpg/bmp/tif files and a 16-bit
    infrared image are all accepted."""
    raw = _m3fd(tmp_path / "raw", count=4, folders=("IR", "vis", "ANNOTATIONS"))
    assert open_layout(raw).name == "m3fd"
    (raw / "IR" / "00000.png").unlink()
    cv2.imwrite(str(raw / "IR" / "00000.tif"), _image(0, False, dtype=np.uint16))
    (raw / "vis" / "00001.png").unlink()
    cv2.imwrite(str(raw / "vis" / "00001.JPG"), _image(1, True))
    (raw / "IR" / "00002.png").unlink()
    cv2.imwrite(str(raw / "IR" / "00002.bmp"), _image(2, False))
    bench = prepare_benchmark(raw, tmp_path / "bench", ratios=(0.5, 0.25, 0.25))
    assert bench.pair("00000").ir.name == "00000.tif"
    assert bench.pair("00001").vi.name == "00001.JPG"
    assert {(p.width, p.height) for p in bench.pairs()} == {(W, H)}


def _generic(root: Path, classes_text: str, labels: dict[str, str]) -> Path:
    for folder in ("ir", "vi", "labels"):
        (root / folder).mkdir(parents=True)
    (root / "labels" / "classes.txt").write_text(classes_text)
    for i, (stem, text) in enumerate(labels.items()):
        cv2.imwrite(str(root / "ir" / f"{stem}.png"), _image(i, False))
        cv2.imwrite(str(root / "vi" / f"{stem}.png"), _image(i + 50, True))
        (root / "labels" / f"{stem}.txt").write_text(text)
    return root


def test_generic_layout_and_its_errors(tmp_path):
    labels = {f"f{i}": "1 0.5 0.5 0.2 0.4\n0  0.25  0.25  0.1  0.1\n" for i in range(10)}
    raw = _generic(tmp_path / "raw", "0 person\n1 car\n", labels)
    bench = prepare_benchmark(raw, tmp_path / "bench")
    assert bench.manifest["source"]["layout"] == "generic" and bench.classes == ["person", "car"]
    coco = json.loads(bench.coco_path("train").read_text())
    assert coco["annotations"][0]["category_id"] == 2
    assert coco["annotations"][0]["bbox"] == pytest.approx([16, 9.6, 8, 12.8])

    (raw / "labels" / "f3.txt").write_text("2 0.5 0.5 0.1 0.1\n")
    (raw / "labels" / "f4.txt").write_text("0 0.5 0.5\n")
    message = _problems(raw, tmp_path)
    assert f"{raw / 'labels' / 'f3.txt'}:1: unknown class 2" in message
    assert f"{raw / 'labels' / 'f4.txt'}:1: expected 'class cx cy w h'" in message


def test_missing_folders_and_classes(tmp_path):
    (tmp_path / "raw" / "ir").mkdir(parents=True)
    (tmp_path / "raw" / "vi").mkdir()
    with pytest.raises(PrepareError, match="no labels/ folder"):
        prepare_benchmark(tmp_path / "raw", tmp_path / "bench")
    (tmp_path / "raw" / "labels").mkdir()
    (tmp_path / "raw" / "labels" / "a.txt").write_text("")
    with pytest.raises(PrepareError, match="classes.txt not found"):
        prepare_benchmark(tmp_path / "raw", tmp_path / "bench")
    with pytest.raises(PrepareError, match="raw dataset folder not found"):
        prepare_benchmark(tmp_path / "nowhere", tmp_path / "bench")
    raw = _m3fd(tmp_path / "m3fd", count=1)
    (raw / "annotations").mkdir()
    with pytest.raises(PrepareError, match=r"folders \['Annotation', 'annotations'\] are ambiguous"):
        prepare_benchmark(raw, tmp_path / "bench")
