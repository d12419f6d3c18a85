"""Dataset layouts on small synthetic folders in each one's exact published structure, MSRS's
detection layout on the real ../shared/data/msrs_det20, and the dataset configs (llvip, m3fd_scene)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from fusionbench.benchmark import M3FD_CLASSES
from pipelines.config import load_config
from pipelines.prepare import PrepareError, prepare_benchmark, prepare_from_config
from pipelines.prepare.layouts import AUTO, LAYOUTS, open_layout
from pipelines.schema import DataSection

W, H = 64, 48


def _grey(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W), dtype=np.uint8)


def _colour(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def _voc(objects: list[tuple[str, int, int, int, int]]) -> str:
    items = "".join(f"<object><name>{n}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>"
                    f"<bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>"
                    for n, a, b, c, d in objects)
    return (f"<annotation><folder>x</folder><filename>f</filename><size><width>{W}</width><height>{H}</height>"
            f"<depth>3</depth></size>{items}</annotation>")


def _llvip(root: Path, train: int = 8, test: int = 4) -> Path:
    """LLVIP: infrared/{train,test}/*.jpg (IR as 24-bit JPEG), visible/{train,test}/*.jpg, Annotations/*.xml."""
    for split, stems in (("train", [f"{10001 + i:06d}" for i in range(train)]),
                         ("test", [f"{190001 + i:06d}" for i in range(test)])):
        for side in ("infrared", "visible"):
            (root / side / split).mkdir(parents=True, exist_ok=True)
        (root / "Annotations").mkdir(exist_ok=True)
        for i, stem in enumerate(stems):
            seed = int(stem)
            cv2.imwrite(str(root / "infrared" / split / f"{stem}.jpg"), cv2.merge([_grey(seed)] * 3))
            cv2.imwrite(str(root / "visible" / split / f"{stem}.jpg"), _colour(seed + 1))
            (root / "Annotations" / f"{stem}.xml").write_text(_voc([("person", 3 + i, 5, 20 + i, 40)]))
    return root


def test_llvip_official_split_val_carved_from_train(tmp_path):
    raw = _llvip(tmp_path / "LLVIP")
    assert open_layout(raw).name == "llvip"
    bench = prepare_benchmark(raw, tmp_path / "bench", ratios=(0.7, 0.1, 0.2), seed=3)
    assert bench.manifest["source"]["layout"] == "llvip" and bench.classes == ["person"]
    assert bench.manifest["split"]["strategy"] == "official"
    assert bench.stems("test") == [f"{190001 + i:06d}" for i in range(4)]
    # val = round(8 * 0.1 / 0.8) = 1 pair taken from the official train folder, recorded in the manifest
    assert len(bench.stems("val")) == 1 and bench.stems("val")[0].startswith("01")
    assert bench.manifest["split"]["val_from_train"] == {"pairs": 1, "fraction": pytest.approx(0.125), "seed": 3}
    # VOC 1-based inclusive corners -> COCO [x, y, w, h]: xmin-1, ymin-1, xmax-xmin+1, ymax-ymin+1
    coco = json.loads(bench.coco_path("test").read_text())
    assert [a["bbox"] for a in coco["annotations"]] == [[2 + i, 4, 18, 36] for i in range(4)]
    assert all(p.ir.parent.name == "test" for p in bench.pairs("test"))


def test_llvip_random_split_on_request_and_official_refused_elsewhere(tmp_path, msrs_det20):
    raw = _llvip(tmp_path / "LLVIP")
    bench = prepare_benchmark(raw, tmp_path / "bench", split_by="random")
    assert bench.manifest["split"]["strategy"] == "random"
    assert any(s.startswith("01") for s in bench.stems("test"))
    with pytest.raises(PrepareError, match="the msrs layout has no official split"):
        prepare_benchmark(msrs_det20, tmp_path / "other", split_by="official")


def _m3fd_distributed(root: Path, count: int = 10) -> Path:
    """M3FD as downloaded: M3FD_Detection/{ir,vi,Annotation}, IR as 24-bit RGB grey."""
    base = root / "M3FD_Detection"
    for folder in ("ir", "vi", "Annotation"):
        (base / folder).mkdir(parents=True)
    for i in range(count):
        stem = f"{i:05d}"
        cv2.imwrite(str(base / "ir" / f"{stem}.png"), cv2.merge([_grey(i)] * 3))
        cv2.imwrite(str(base / "vi" / f"{stem}.png"), _colour(100 + i))
        # names as other repositories write them, in TarDAL's class order, plus documented aliases
        (base / "Annotation" / f"{stem}.xml").write_text(_voc([
            ("People", 1, 1, 10, 10), ("Car", 2, 2, 12, 12), ("Bus", 3, 3, 13, 13), ("Lamp", 4, 4, 14, 14),
            ("motorbike", 5, 5, 15, 15), ("TRUCK", 6, 6, 16, 16), ("person", 7, 7, 17, 17)]))
    return root


def test_m3fd_as_distributed(tmp_path):
    raw = _m3fd_distributed(tmp_path / "M3FD")
    assert open_layout(raw).name == "m3fd-distributed"
    bench = prepare_benchmark(raw, tmp_path / "bench")
    assert bench.classes == list(M3FD_CLASSES) == ["People", "Car", "Bus", "Motorcycle", "Lamp", "Truck"]
    assert bench.pair("00000").ir == (raw / "M3FD_Detection" / "ir" / "00000.png").resolve()
    stem = bench.stems("train")[0]
    classes = [int(line.split()[0]) for line in (bench.labels_dir("train") / f"{stem}.txt").read_text().splitlines()]
    assert classes == [0, 1, 2, 4, 3, 5, 0]   # by name into the fixed order, never TarDAL's order
    # the M3FD_Detection folder itself is recognised too
    assert open_layout(raw / "M3FD_Detection").root == raw / "M3FD_Detection"


def test_m3fd_24_bit_ir_whose_channels_differ_is_refused(tmp_path):
    raw = _m3fd_distributed(tmp_path / "M3FD")
    bad = raw / "M3FD_Detection" / "ir" / "00003.png"
    grey = _grey(3)
    cv2.imwrite(str(bad), cv2.merge([grey, grey, np.clip(grey.astype(int) + 7, 0, 255).astype(np.uint8)]))
    with pytest.raises(PrepareError) as caught:
        prepare_benchmark(raw, tmp_path / "bench")
    assert f"{bad}: infrared image stored as colour whose channels differ (by up to 7 levels)" in str(caught.value)
    assert "1 problem(s) in 1 pair(s)" in str(caught.value)


def test_m3fd_unknown_class_names_the_aliases(tmp_path):
    raw = _m3fd_distributed(tmp_path / "M3FD", count=1)
    note = raw / "M3FD_Detection" / "Annotation" / "00000.xml"
    note.write_text(_voc([("Tractor", 1, 1, 5, 5)]))
    with pytest.raises(PrepareError, match=r"unknown class name\(s\) \['Tractor'\]"):
        prepare_benchmark(raw, tmp_path / "bench")


def test_msrs_detection_layout(msrs_det20, tmp_path):
    assert open_layout(msrs_det20).name == "msrs"
    for variant in ("infrared", "visible", "fusion"):
        layout = open_layout(msrs_det20, labels=variant)
        assert layout.annotation_dir == msrs_det20 / "labels" / variant
        assert layout.classes == ("person", "bicycle", "car")
    with pytest.raises(PrepareError, match="label variant 'thermal': the msrs layout has infrared, visible, fusion"):
        open_layout(msrs_det20, labels="thermal")


def test_msrs_without_classes_file_uses_the_published_classes(msrs_det20, tmp_path):
    raw = tmp_path / "msrs"
    for folder in ("ir", "vi", "labels/visible"):
        (raw / folder).mkdir(parents=True)
    for stem in ("00004N", "00008N"):
        for folder in ("ir", "vi"):
            (raw / folder / f"{stem}.png").symlink_to(msrs_det20 / folder / f"{stem}.png")
        (raw / "labels" / "visible" / f"{stem}.txt").write_text(
            (msrs_det20 / "labels" / "visible" / f"{stem}.txt").read_text())
    layout = open_layout(raw, labels="visible")
    assert layout.name == "msrs" and layout.classes == ("person", "bicycle", "car")


def test_label_variant_refused_where_it_means_nothing(tmp_path):
    raw = _m3fd_distributed(tmp_path / "M3FD", count=1)
    with pytest.raises(PrepareError, match="the m3fd-distributed layout has no label variants, but 'fusion'"):
        open_layout(raw, labels="fusion")


def test_unrecognised_folder_lists_the_layouts(tmp_path):
    (tmp_path / "raw" / "pictures").mkdir(parents=True)
    with pytest.raises(PrepareError) as caught:
        open_layout(tmp_path / "raw")
    assert "no known dataset layout recognised" in str(caught.value)
    assert all(name in str(caught.value) for name in ("LLVIP", "M3FD_Detection", "labels/{infrared,visible,fusion}"))


def test_duplicate_stem_across_llvip_folders(tmp_path):
    raw = _llvip(tmp_path / "LLVIP", train=3, test=2)
    for side in ("infrared", "visible"):
        (raw / side / "test" / "010001.jpg").write_bytes((raw / side / "train" / "010001.jpg").read_bytes())
    with pytest.raises(PrepareError) as caught:
        prepare_benchmark(raw, tmp_path / "bench")
    assert f"{raw / 'infrared' / 'test' / '010001.jpg'}: stem '010001' is also in {raw / 'infrared' / 'train'}" \
        in str(caught.value)


def test_the_schema_takes_every_registered_layout_and_no_other():
    for name in (AUTO, *LAYOUTS):
        assert DataSection(layout=name).layout == name
    with pytest.raises(ValueError, match="expected auto or one of m3fd"):
        DataSection(layout="m3fdd")


def test_llvip_config_uses_the_official_split(tmp_path):
    raw = _llvip(tmp_path / "LLVIP")
    config = load_config("llvip", values={"data.raw": raw, "data.benchmark": tmp_path / "bench"})
    bench = prepare_from_config(config)
    assert bench.manifest["source"]["layout"] == "llvip" and bench.manifest["split"]["strategy"] == "official"
    assert bench.stems("test") == [f"{190001 + i:06d}" for i in range(4)]


def test_m3fd_scene_config_reads_the_published_lists(tmp_path, monkeypatch):
    raw = _m3fd_distributed(tmp_path / "M3FD")
    monkeypatch.chdir(tmp_path)
    values = {"data.raw": raw, "data.benchmark": tmp_path / "bench"}
    with pytest.raises(PrepareError, match="data/m3fd-zxSplit: split file not found"):
        prepare_from_config(load_config("m3fd_scene", values=values))
    lists = Path("data/m3fd-zxSplit")
    lists.mkdir(parents=True)
    (lists / "train.txt").write_bytes(b"".join(f"{i:05d}.png\r\n".encode() for i in range(7)))
    (lists / "test.txt").write_bytes(b"".join(f"{i:05d}.png\r\n".encode() for i in range(7, 10)))
    bench = prepare_from_config(load_config("m3fd_scene", values=values))
    assert bench.manifest["split"]["strategy"] == "file"
    assert bench.stems("test") == ["00007", "00008", "00009"]
    assert bench.manifest["split"]["val_from_train"]["pairs"] == 1    # round(7 / 8)
