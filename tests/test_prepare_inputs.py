"""Issue 17's prepare-side input checks, each reproduced on real files: an interrupted re-prepare,
an edited split list, a too-small image, EXIF orientation, control characters in a file name."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

import pipelines.prepare.build as build
from fusionbench.benchmark import SPLITS, Benchmark, BenchmarkError
from pipelines.prepare import PrepareError, prepare_benchmark

W, H = 64, 48


def _m3fd(root: Path, count: int = 10) -> Path:
    for folder in ("Ir", "Vis", "Annotation"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        rng = np.random.default_rng(i)
        cv2.imwrite(str(root / "Ir" / f"{i:05d}.png"), rng.integers(0, 256, (H, W), dtype=np.uint8))
        cv2.imwrite(str(root / "Vis" / f"{i:05d}.png"), rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
        (root / "Annotation" / f"{i:05d}.xml").write_text(
            "<annotation><object><name>Car</name><bndbox><xmin>3</xmin><ymin>4</ymin><xmax>30</xmax>"
            "<ymax>20</ymax></bndbox></object></annotation>")
    return root


def _refusal(raw: Path, tmp_path: Path) -> str:
    with pytest.raises(PrepareError) as caught:
        prepare_benchmark(raw, tmp_path / "refused")
    return str(caught.value)


def test_interrupted_re_prepare_leaves_no_manifest_beside_new_lists(tmp_path, monkeypatch):
    raw, out = _m3fd(tmp_path / "raw"), tmp_path / "bench"
    prepare_benchmark(raw, out, seed=0)
    calls = []
    original = build.write_yolo_labels

    def interrupted(folder, labels, stems):
        calls.append(folder)
        if len(calls) == 2:           # new train list and labels written, then the process dies
            raise KeyboardInterrupt
        original(folder, labels, stems)

    monkeypatch.setattr(build, "write_yolo_labels", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare_benchmark(raw, out, seed=1)
    with pytest.raises(BenchmarkError, match="no prepared benchmark here"):
        Benchmark(out)                # no stage can take the half-written folder as complete
    monkeypatch.setattr(build, "write_yolo_labels", original)
    bench = prepare_benchmark(raw, out, seed=1)
    for split in SPLITS:              # rerun: every listed pair has its label file, nothing else is left
        assert sorted(p.stem for p in bench.labels_dir(split).glob("*.txt")) == bench.stems(split)


def test_edited_split_list_is_an_error_naming_the_file(tmp_path):
    bench = prepare_benchmark(_m3fd(tmp_path / "raw", count=20), tmp_path / "bench")
    path = bench.root / "splits" / "test.txt"
    lines = path.read_text().splitlines()
    assert len(bench.pairs("test")) == len(lines) == 4
    path.write_text("".join(f"{line}\n" for line in lines[:-1]))      # one test image silently gone
    with pytest.raises(BenchmarkError) as caught:
        Benchmark(bench.root).pairs("test")
    assert str(caught.value).startswith(f"{path}: 3 pair(s)") and "manifest records 4 pair(s)" in str(caught.value)
    path.write_text("".join(f"{line}\n" for line in reversed(lines)))  # same stems, another order: also edited
    with pytest.raises(BenchmarkError, match="the list was edited"):
        Benchmark(bench.root).stems("test")


@pytest.mark.parametrize("size", [(1, 1), (31, 40), (40, 31)])
def test_too_small_image_is_refused(tmp_path, size):
    raw = _m3fd(tmp_path / "raw")
    width, height = size
    cv2.imwrite(str(raw / "Ir" / "00002.png"), np.zeros((height, width), np.uint8))
    cv2.imwrite(str(raw / "Vis" / "00002.png"), np.zeros((height, width, 3), np.uint8))
    message = _refusal(raw, tmp_path)
    assert f"{raw / 'Ir' / '00002.png'}: {width}x{height} pixels, smaller than the minimum 32x32" in message


def _png_with_exif_after_pixels(path: Path, grey: np.ndarray, exif: bytes) -> None:
    """A PNG whose eXIf chunk follows the image data (allowed by the PNG spec; PIL writes it before)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + row.tobytes() for row in grey)
    header = struct.pack(">IIBBBBB", grey.shape[1], grey.shape[0], 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"eXIf", exif) + chunk(b"IEND", b""))


@pytest.mark.parametrize("where", ["jpeg", "png", "png after the pixels"])
def test_exif_orientation_is_refused(tmp_path, where):
    raw = _m3fd(tmp_path / "raw")
    suffix = ".jpg" if where == "jpeg" else ".png"
    for folder in ("Ir", "Vis"):
        (raw / folder / "00004.png").unlink()
    exif = Image.Exif()
    exif[0x0112] = 6      # "rotate 90 CW to display"
    ir = raw / "Ir" / f"00004{suffix}"
    grey = np.full((H, W), 99, np.uint8)
    if where == "png after the pixels":
        _png_with_exif_after_pixels(ir, grey, exif.tobytes())
    else:
        Image.fromarray(grey).save(ir, exif=exif)
    Image.fromarray(np.full((H, W, 3), 99, np.uint8)).save(raw / "Vis" / f"00004{suffix}")
    message = _refusal(raw, tmp_path)
    assert f"{ir}: EXIF orientation 6 (rotated or mirrored) is not supported" in message

    exif[0x0112] = 1      # "normal" is what every tool agrees on
    Image.fromarray(grey).save(ir, exif=exif)
    prepare_benchmark(raw, tmp_path / "bench")


def test_control_character_in_a_file_name_is_refused(tmp_path):
    raw = _m3fd(tmp_path / "raw")
    for folder, suffix in (("Ir", ".png"), ("Vis", ".png"), ("Annotation", ".xml")):
        (raw / folder / f"00005{suffix}").rename(raw / folder / f"000\n05{suffix}")
    message = _refusal(raw, tmp_path)
    for folder, suffix in (("Ir", ".png"), ("Vis", ".png"), ("Annotation", ".xml")):
        assert f"{raw / folder}: file name '000\\n05{suffix}' holds a control character" in message
    bench = prepare_benchmark(raw, tmp_path / "bench", skip_bad=True)
    assert len(bench.pairs()) == 9 and bench.manifest["skipped"][0]["stem"] == "000\n05"
