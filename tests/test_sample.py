"""The synthetic sample: M3FD layout, deterministic, exact boxes, and the fusion-relevant physics
(warm objects in IR, degraded VI under night/fog, objects hidden in one modality)."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from fusionbench.benchmark import M3FD_CLASSES
from pipelines.cli import cli
from pipelines.sample import CONDITIONS, _draw_objects, _make_scene, make_sample


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_and_determinism(tmp_path):
    one = make_sample(tmp_path / "one", pairs=5, width=96, height=72, seed=4)
    two = make_sample(tmp_path / "two", pairs=5, width=96, height=72, seed=4)
    other = make_sample(tmp_path / "other", pairs=5, width=96, height=72, seed=5)
    assert _files(one) == _files(two)
    assert (one / "Ir" / "00000.png").read_bytes() != (other / "Ir" / "00000.png").read_bytes()
    stems = [f"{i:05d}" for i in range(5)]
    for folder, suffix in (("Ir", ".png"), ("Vis", ".png"), ("Annotation", ".xml")):
        assert sorted(p.name for p in (one / folder).iterdir()) == [s + suffix for s in stems]
    ir = cv2.imread(str(one / "Ir" / "00000.png"), cv2.IMREAD_UNCHANGED)
    vi = cv2.imread(str(one / "Vis" / "00000.png"), cv2.IMREAD_UNCHANGED)
    assert ir.shape == (72, 96) and ir.dtype == np.uint8 and vi.shape == (72, 96, 3)
    info = json.loads((one / "sample.json").read_text())
    for stem in stems:
        root = ET.parse(one / "Annotation" / f"{stem}.xml").getroot()
        names = [o.findtext("name") for o in root.iter("object")]
        boxes = [[int(o.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")] for o in root.iter("object")]
        assert names == [o["class"] for o in info["frames"][stem]["objects"]]
        assert boxes == [[x1 + 1, y1 + 1, x2, y2] for x1, y1, x2, y2 in (o["box"] for o in info["frames"][stem]["objects"])]
        assert all(0 <= x1 < x2 <= 96 and 0 <= y1 < y2 <= 72 for x1, y1, x2, y2 in boxes)


def test_reuse_shrink_and_foreign_folder(tmp_path):
    out = make_sample(tmp_path / "s", pairs=6, width=64, height=48, seed=0)
    stamp = (out / "Ir" / "00000.png").stat().st_mtime_ns
    make_sample(out, pairs=6, width=64, height=48, seed=0)
    assert (out / "Ir" / "00000.png").stat().st_mtime_ns == stamp        # same sample: nothing rewritten
    make_sample(out, pairs=3, width=64, height=48, seed=0)
    assert sorted(p.name for p in (out / "Vis").iterdir()) == ["00000.png", "00001.png", "00002.png"]
    complete = (out / "sample.json").read_text()
    (out / "Ir" / "00002.png").unlink()                                  # as if interrupted while writing
    (out / "sample.json").write_text(json.dumps({"params": json.loads(complete)["params"], "frames": None}))
    make_sample(out, pairs=3, width=64, height=48, seed=0)
    assert (out / "Ir" / "00002.png").is_file() and (out / "sample.json").read_text() == complete
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(ValueError, match="not a synthetic sample"):
        make_sample(tmp_path / "mine", pairs=2, width=64, height=48, seed=0)


def test_boxes_are_exact():
    """Each object drawn alone on a black frame: its box is exactly the extent of its pixels."""
    rng = np.random.default_rng(11)
    checked = 0
    for _ in range(4):
        scene = _make_scene(rng, 160, 120, "day", [])
        scene.ir[:] = 0
        for obj in scene.objects:
            scene.objects = [obj]
            ir, _vi, boxes, _shown, _labels = _draw_objects(scene, frame=2)
            rows, cols = np.nonzero(ir)
            assert boxes[0][1] == [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
            checked += 1
    assert checked >= 8


def test_sample_has_classes_conditions_and_one_modality_objects(sample_raw):
    info = json.loads((sample_raw / "sample.json").read_text())
    frames = info["frames"]
    objects = [o for f in frames.values() for o in f["objects"]]
    assert {o["class"] for o in objects} == set(M3FD_CLASSES)
    assert {f["condition"] for f in frames.values()} == set(CONDITIONS)
    assert {o["hidden_in"] for o in objects} == {"", "ir", "vi"}
    scenes = [f["scene"] for f in frames.values()]
    assert scenes == sorted(scenes) and len(set(scenes)) < len(scenes)     # short video scenes


def _load(raw: Path, stem: str) -> tuple[np.ndarray, np.ndarray]:
    ir = cv2.imread(str(raw / "Ir" / f"{stem}.png"), cv2.IMREAD_UNCHANGED) / 255.0
    vi = cv2.imread(str(raw / "Vis" / f"{stem}.png"), cv2.IMREAD_UNCHANGED) / 255.0
    return ir, vi


def test_modalities_behave_like_ir_and_vi(sample_raw):
    frames = json.loads((sample_raw / "sample.json").read_text())["frames"]
    ir_contrast: dict[str, list[float]] = {"": [], "ir": [], "vi": []}
    vi_texture: dict[str, list[float]] = {"": [], "ir": [], "vi": []}
    means: dict[str, list[tuple[float, float, float]]] = {c: [] for c in CONDITIONS}
    for stem, frame in frames.items():
        ir, vi = _load(sample_raw, stem)
        means[frame["condition"]].append((ir.mean(), vi.mean(), vi.std()))
        for obj in frame["objects"]:
            x1, y1, x2, y2 = obj["box"]
            ir_contrast[obj["hidden_in"]].append(np.percentile(ir[y1:y2, x1:x2], 90) - np.median(ir))
            if frame["condition"] == "day":
                vi_texture[obj["hidden_in"]].append(vi[y1:y2, x1:x2].std(axis=(0, 1)).mean())
    median = {k: float(np.median(v)) for k, v in ir_contrast.items()}
    assert median[""] > 0.25 and median["vi"] > 0.25       # warm objects stand out in IR ...
    assert median["ir"] < median[""] / 3                   # ... unless camouflaged in IR
    assert np.median(vi_texture["vi"]) < np.median(vi_texture[""]) / 2   # camouflaged in VI
    day, night, fog = (np.mean(means[c], axis=0) for c in ("day", "night", "fog"))
    assert night[1] < day[1] / 2                           # VI dark at night
    assert 0.7 < night[0] / day[0] < 1.4                   # IR unaffected
    assert fog[2] < day[2] * 0.6                           # VI contrast low in fog


def test_sample_command(tmp_path):
    out = tmp_path / "raw"
    result = CliRunner().invoke(cli, ["sample", "-s", f"run.root={tmp_path / 'runs'}", "-s", "sample.pairs=4",
                                      "-s", "sample.width=64", "-s", "sample.height=48", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert len(list((out / "Ir").iterdir())) == 4
    assert json.loads((out / "sample.json").read_text())["params"]["width"] == 64


def test_masks_label_every_drawn_object_and_the_background(tmp_path):
    """The segmentation masks agree with the boxes: each object's pixels (camouflaged ones too) carry its class,
    object classes appear only inside that class's boxes, and the background is the scene's regions."""
    from PIL import Image

    from pipelines.sample import SEGMENTATION_CLASSES

    out = make_sample(tmp_path / "s", pairs=8, width=128, height=96, seed=3)
    assert (out / "masks" / "classes.txt").read_text().split() == list(SEGMENTATION_CLASSES)
    info = json.loads((out / "sample.json").read_text())
    objects = {name: SEGMENTATION_CLASSES.index(name) for name in M3FD_CLASSES}
    for stem, frame in info["frames"].items():
        mask = np.asarray(Image.open(out / "masks" / f"{stem}.png"))
        assert mask.shape == (96, 128) and mask.max() < len(SEGMENTATION_CLASSES)
        inside = {index: np.zeros_like(mask, bool) for index in objects.values()}
        for obj in frame["objects"]:
            x1, y1, x2, y2 = obj["box"]
            inside[objects[obj["class"]]][y1:y2, x1:x2] = True
        for name, index in objects.items():
            assert not np.any((mask == index) & ~inside[index]), (stem, name)  # no pixel outside its boxes
        for obj in frame["objects"]:
            x1, y1, x2, y2 = obj["box"]
            assert np.any(mask[y1:y2, x1:x2] == objects[obj["class"]]), (stem, obj)  # hidden ones too
        assert {SEGMENTATION_CLASSES.index("sky"), SEGMENTATION_CLASSES.index("road")} <= set(np.unique(mask).tolist())
