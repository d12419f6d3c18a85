"""A small synthetic raw dataset in the M3FD layout, so the whole benchmark runs on a laptop.

Road scenes (sky, buildings, trees, a road in perspective) with the six M3FD classes. Objects
are warm in infrared and coloured/textured in the visible image. Frames come in short "video"
scenes (objects move a little between frames, as in M3FD), under one condition per scene:

* ``day``   - both modalities clear;
* ``night`` - visible image dark and noisy, only lamps and headlights glow;
* ``fog``   - visible contrast fades with distance; infrared barely affected;
* ``smoke`` - a smoke cloud hides part of the visible image;
* ``glare`` - a saturating light source washes out part of the visible image.

Some objects are camouflaged in one modality (same temperature as the background in IR, or the
colour of the background in VI), so single-modality detectors miss things a good fusion keeps.
Every frame also has a segmentation mask (``masks/<stem>.png``, class indices of :data:`SEGMENTATION_CLASSES`
in ``masks/classes.txt``): the background's regions and each object's drawn pixels as its class, camouflaged
objects included. Boxes are exact: each is the bounding box of the object's drawn pixels (in ``sample.json`` as
pixel-edge corners, ``xmax = last column + 1``; in the XML as Pascal VOC's 1-based inclusive indices). Everything is drawn without anti-aliasing from one seeded generator,
so the same arguments give byte-identical files.
"""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fusionbench.benchmark import M3FD_CLASSES
from fusionbench.files import atomic_write_text
from fusionbench.images import write_image
from pipelines.config import run_layout
from pipelines.schema import Config
from segmentation.masks import generated_palette, write_index_png

CONDITIONS = ("day", "night", "fog", "smoke", "glare")
FRAMES_PER_SCENE = (3, 6)        # inclusive range of frames in one scene
EMPTY_SCENE = 0.08               # chance that a scene has no objects (background images)
CAMOUFLAGE = 0.15                # chance that an object is hidden in one modality
GENERATOR_VERSION = 4            # bump when the drawing changes: cached samples are then regenerated
# Segmentation classes of the sample, index order: the background's regions, then M3FD's object classes.
SEGMENTATION_CLASSES = ("ground", "sky", "building", "vegetation", "road", "marking", *M3FD_CLASSES)
GROUND, SKY, BUILDING, VEGETATION, ROAD, MARKING = range(6)

# Size of each class relative to a standing person at the same distance: (height, width).
SHAPES = {"People": (1.0, 0.36), "Car": (0.75, 1.9), "Bus": (1.6, 4.0), "Motorcycle": (0.62, 1.05),
          "Lamp": (2.6, 0.55), "Truck": (1.5, 3.2)}


@dataclass
class _Object:
    cls: str
    x: float           # horizontal centre at the first frame of the scene
    ground: float      # row of the object's bottom
    person: float      # height of a person at this distance (px)
    speed: float       # px per frame
    hidden_in: str     # "" (visible in both), "ir" or "vi"
    colour: np.ndarray  # main visible colour, RGB in [0, 1]
    facing: int        # +1 right, -1 left


@dataclass
class _Scene:
    condition: str
    horizon: int
    ir: np.ndarray     # static background, (H, W) float32
    vi: np.ndarray     # static background, (H, W, 3) float32
    texture: np.ndarray  # fine noise in [-1, 1] giving objects a surface texture
    labels: np.ndarray   # static background's segmentation classes, (H, W) uint8
    objects: list[_Object]
    light: tuple[int, int]  # glare source / smoke centre
    strength: float         # fog density


def make_sample(out: Path, pairs: int = 60, width: int = 256, height: int = 192, seed: int = 0) -> Path:
    """Write ``pairs`` IR/VI pairs with VOC annotations under ``out`` (``Ir/``, ``Vis/``,
    ``Annotation/``) and ``sample.json`` (parameters, per-frame condition and camouflaged objects).
    Nothing is rewritten when ``out`` already holds the same sample."""
    out = Path(out)
    params = {"pairs": pairs, "width": width, "height": height, "seed": seed, "version": GENERATOR_VERSION}
    if pairs < 1 or width < 64 or height < 48:
        raise ValueError(f"sample of {pairs} pairs at {width}x{height}: need >= 1 pair and >= 64x48 pixels")
    info_path = out / "sample.json"
    if info_path.is_file():
        info = json.loads(info_path.read_text())
        if info.get("params") == params and info.get("frames") is not None:
            return out
    elif out.is_dir() and any(out.iterdir()):
        raise ValueError(f"{out}: not empty and not a synthetic sample (no sample.json); choose another folder")
    atomic_write_text(info_path, json.dumps({"params": params, "frames": None}) + "\n")   # claimed, incomplete
    rng = np.random.default_rng(seed)
    conditions = [CONDITIONS[i] for i in rng.permutation(len(CONDITIONS))]
    frames: dict[str, dict] = {}
    deck: list[str] = []
    scene_index = 0
    while len(frames) < pairs:
        scene = _make_scene(rng, width, height, conditions[scene_index % len(conditions)], deck)
        length = min(int(rng.integers(FRAMES_PER_SCENE[0], FRAMES_PER_SCENE[1] + 1)), pairs - len(frames))
        for f in range(length):
            stem = f"{len(frames):05d}"
            ir, vi, boxes, labels = _render(scene, f, rng)
            write_image(out / "Ir" / f"{stem}.png", ir)
            write_image(out / "Vis" / f"{stem}.png", vi)
            write_index_png(out / "masks" / f"{stem}.png", labels, generated_palette(len(SEGMENTATION_CLASSES)))
            atomic_write_text(out / "Annotation" / f"{stem}.xml", _voc_xml(stem, width, height, boxes))
            frames[stem] = {"scene": scene_index, "condition": scene.condition,
                            "objects": [{"class": c, "box": b, "hidden_in": h} for c, b, h in boxes]}
        scene_index += 1
    atomic_write_text(out / "masks" / "classes.txt", "".join(f"{name}\n" for name in SEGMENTATION_CLASSES))
    _remove_stale(out, set(frames))
    atomic_write_text(info_path, json.dumps({"params": params, "frames": frames}, indent=1) + "\n")
    return out


def _remove_stale(out: Path, stems: set[str]) -> None:
    """Frames left by an earlier, larger sample in the same folder."""
    for folder in ("Ir", "Vis", "Annotation", "masks"):
        for path in (out / folder).iterdir():
            if path.stem not in stems and path.name != "classes.txt":
                path.unlink()


def sample_from_config(config: Config, out: Path | None = None) -> Path:
    """The sample described by the config's ``sample`` section, in ``out`` or ``<run dir>/sample_raw``."""
    section = config.sample
    return make_sample(Path(out) if out else run_layout(config).sample_raw,
                       pairs=section.pairs, width=section.width, height=section.height, seed=section.seed)


# --- scenes -------------------------------------------------------------------------------------

def _smooth_noise(rng: np.random.Generator, width: int, height: int, cell: int) -> np.ndarray:
    """Noise in [-1, 1] varying over about ``cell`` pixels."""
    small = rng.uniform(-1, 1, (max(2, height // cell), max(2, width // cell))).astype(np.float32)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC).clip(-1, 1)


def _road_half_width(width: int, height: int, horizon: int, y: float) -> float:
    return width * (0.03 + 0.47 * (y - horizon) / (height - horizon))


def _make_scene(rng: np.random.Generator, width: int, height: int, condition: str, deck: list[str]) -> _Scene:
    horizon = int(height * rng.uniform(0.33, 0.45))
    rows = np.arange(height, dtype=np.float32)[:, None, None]
    sky_top, sky_low = rng.uniform([0.35, 0.55, 0.8], [0.5, 0.7, 0.95]), rng.uniform([0.7, 0.78, 0.85], [0.85, 0.88, 0.95])
    t = np.clip(rows / max(horizon, 1), 0, 1)
    vi = np.broadcast_to(sky_top * (1 - t) + sky_low * t, (height, width, 3)).astype(np.float32).copy()
    ir = np.full((height, width), rng.uniform(0.05, 0.2), np.float32)
    ground_vi = rng.uniform([0.3, 0.4, 0.2], [0.45, 0.55, 0.3])
    vi[horizon:] = ground_vi
    ground_ir = rng.uniform(0.22, 0.4)
    ir[horizon:] = ground_ir
    labels = np.full((height, width), SKY, np.uint8)
    labels[horizon:] = GROUND
    _draw_skyline(rng, ir, vi, labels, horizon)
    centre = width * rng.uniform(0.42, 0.58)
    road = np.array([[centre - 0.03 * width, horizon], [centre + 0.03 * width, horizon],
                     [centre + 0.5 * width, height], [centre - 0.5 * width, height]], np.int32)
    _fill(ir, vi, road, ground_ir + rng.uniform(0.04, 0.12), rng.uniform(0.3, 0.42) * np.ones(3))
    cv2.fillPoly(labels, [road], ROAD, cv2.LINE_8)
    for y0 in range(horizon + 4, height, max(6, height // 12)):          # dashed centre line
        y1 = y0 + max(3, height // 30)
        half = max(1.0, 0.012 * width * (y1 - horizon) / (height - horizon))
        dash = np.array([[centre - half, y0], [centre + half, y0], [centre + half, y1], [centre - half, y1]], np.int32)
        _fill(ir, vi, dash, 0.33, np.array([0.92, 0.92, 0.88]))
        cv2.fillPoly(labels, [dash], MARKING, cv2.LINE_8)
    vi *= 1 + 0.08 * _smooth_noise(rng, width, height, 12)[..., None]
    ir += 0.03 * _smooth_noise(rng, width, height, 16)
    objects = _place_objects(rng, width, height, horizon, centre, condition, deck)
    light = (int(rng.uniform(0.15, 0.85) * width), int(rng.uniform(0.2, 0.6) * height))
    return _Scene(condition, horizon, ir, vi, rng.uniform(-1, 1, (height, width)).astype(np.float32), labels,
                  objects, light, float(rng.uniform(0.6, 0.95)))


def _draw_skyline(rng: np.random.Generator, ir: np.ndarray, vi: np.ndarray, labels: np.ndarray, horizon: int) -> None:
    height, width = ir.shape
    x = int(rng.integers(-10, 0))
    while x < width:
        w, h = int(rng.uniform(0.06, 0.16) * width), int(rng.uniform(0.08, 0.3) * height)
        if rng.uniform() < 0.3:                                           # a tree
            cv2.ellipse(vi, (x + w // 2, horizon - h // 3), (w // 2, h // 2), 0, 0, 360,
                        rng.uniform([0.1, 0.3, 0.1], [0.2, 0.45, 0.2]).tolist(), -1, cv2.LINE_8)
            cv2.ellipse(ir, (x + w // 2, horizon - h // 3), (w // 2, h // 2), 0, 0, 360, 0.22, -1, cv2.LINE_8)
            cv2.ellipse(labels, (x + w // 2, horizon - h // 3), (w // 2, h // 2), 0, 0, 360, VEGETATION, -1, cv2.LINE_8)
        else:                                                              # a building with windows
            colour = rng.uniform(0.35, 0.75) * rng.uniform(0.8, 1.0, 3)
            cv2.rectangle(vi, (x, horizon - h), (x + w, horizon + 1), colour.tolist(), -1, cv2.LINE_8)
            cv2.rectangle(ir, (x, horizon - h), (x + w, horizon + 1), float(rng.uniform(0.25, 0.35)), -1, cv2.LINE_8)
            cv2.rectangle(labels, (x, horizon - h), (x + w, horizon + 1), BUILDING, -1, cv2.LINE_8)
            step = max(4, width // 40)
            for wy in range(horizon - h + 2, horizon - 2, step):
                for wx in range(x + 2, x + w - 2, step):
                    cv2.rectangle(vi, (wx, wy), (wx + step // 2, wy + step // 2), (colour * 0.55).tolist(), -1)
                    cv2.rectangle(ir, (wx, wy), (wx + step // 2, wy + step // 2), 0.38, -1)
        x += w + int(rng.integers(0, max(2, width // 20)))


def _fill(ir: np.ndarray, vi: np.ndarray, polygon: np.ndarray, ir_value: float, vi_colour: np.ndarray) -> None:
    cv2.fillPoly(ir, [polygon], float(ir_value), cv2.LINE_8)
    cv2.fillPoly(vi, [polygon], vi_colour.tolist(), cv2.LINE_8)


def _place_objects(rng: np.random.Generator, width: int, height: int, horizon: int, centre: float,
                   condition: str, deck: list[str]) -> list[_Object]:
    """3-7 objects that do not overlap much; classes are dealt from ``deck`` (refilled with a shuffled
    set of all six), so every class appears about equally often. Now and then an empty road."""
    objects: list[_Object] = []
    footprints: list[tuple[float, float, float, float]] = []
    count = 0 if rng.uniform() < EMPTY_SCENE else int(rng.integers(3, 8))
    for _ in range(count):
        if not deck:
            deck.extend(M3FD_CLASSES[i] for i in rng.permutation(len(M3FD_CLASSES)))
        cls = deck.pop()
        rel_h, rel_w = SHAPES[cls]
        biggest = min(0.45 * width / rel_w, 0.96 * (height - horizon) / rel_h, 0.42 * height)   # person height
        for _attempt in range(20):
            y = rng.uniform(horizon + 0.12 * (height - horizon), height - 1)
            person = 0.42 * height * (y - horizon) / (height - horizon)
            if person * rel_h < 8 or person > biggest or y - person * rel_h < 1:
                continue
            half_road = _road_half_width(width, height, horizon, y)
            if cls == "Lamp":
                x = centre + rng.choice([-1, 1]) * (half_road + person * rel_w * 0.6)
            elif cls == "People":
                x = centre + rng.uniform(-1.4, 1.4) * half_road
            else:
                x = centre + rng.uniform(-0.7, 0.7) * half_road
            box = (x - person * rel_w / 2, y - person * rel_h, x + person * rel_w / 2, y)
            if box[0] < 1 or box[2] > width - 1 or any(_overlap(box, other) > 0.25 for other in footprints):
                continue
            hidden = ""
            if rng.uniform() < 2 * CAMOUFLAGE:
                hidden = "vi" if condition == "night" or rng.uniform() < 0.5 else "ir"   # night: VI is dark anyway
            speed = 0.0 if cls == "Lamp" else float(rng.uniform(-0.02, 0.02) * person)
            colour = rng.uniform(0.1, 0.95, 3) if cls != "Lamp" else np.array([0.35, 0.35, 0.38])
            objects.append(_Object(cls, x, y, person, speed, hidden, colour, 1 if x < centre else -1))
            footprints.append(box)
            break
    return sorted(objects, key=lambda o: o.ground)                       # far objects first


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over the smaller box."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    return w * h / min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))


# --- objects ------------------------------------------------------------------------------------

def _parts(obj: _Object, x: float) -> list[tuple[str, object, float, np.ndarray]]:
    """The object's parts as (shape, geometry, IR warmth, VI colour); shapes are cv2 primitives."""
    p, y, f = obj.person, obj.ground, obj.facing
    h, w = SHAPES[obj.cls][0] * p, SHAPES[obj.cls][1] * p
    c = obj.colour
    dark, glass = np.array([0.06, 0.06, 0.07]), np.array([0.15, 0.2, 0.28])
    if obj.cls == "People":
        skin = np.array([0.85, 0.65, 0.5])
        return [("rect", (x - 0.17 * w, y - 0.5 * h, x - 0.02 * w, y), 0.74, c * 0.5),    # legs
                ("rect", (x + 0.02 * w, y - 0.5 * h, x + 0.17 * w, y), 0.74, c * 0.5),
                ("rect", (x - w / 2, y - 0.8 * h, x + w / 2, y - 0.48 * h), 0.8, c),             # torso
                ("circle", (x, y - 0.89 * h, 0.11 * h), 0.95, skin)]
    if obj.cls == "Car":
        r = 0.2 * h
        return [("rect", (x - w / 2, y - 0.62 * h, x + w / 2, y - r), 0.55, c),
                ("poly", [(x - 0.3 * w, y - 0.62 * h), (x - 0.2 * w, y - h), (x + 0.25 * w, y - h),
                          (x + 0.38 * w, y - 0.62 * h)], 0.5, c),
                ("rect", (x - 0.18 * w, y - 0.93 * h, x + 0.24 * w, y - 0.66 * h), 0.3, glass),
                ("rect", (x + f * 0.3 * w - 0.15 * w, y - 0.6 * h, x + f * 0.3 * w + 0.15 * w, y - 0.4 * h), 0.85, c),
                ("circle", (x - 0.3 * w, y - r, r), 0.82, dark), ("circle", (x + 0.3 * w, y - r, r), 0.82, dark)]
    if obj.cls in ("Bus", "Truck"):
        r = 0.13 * h
        if obj.cls == "Bus":
            body = [("rect", (x - w / 2, y - h, x + w / 2, y - r), 0.52, c),
                    ("rect", (x - 0.45 * w, y - 0.85 * h, x + 0.45 * w, y - 0.55 * h), 0.32, glass),
                    ("rect", (x - f * 0.5 * w, y - 0.5 * h, x - f * 0.42 * w, y - r), 0.9, c * 0.7)]
        else:
            cab = (x + f * 0.36 * w - 0.14 * w, y - 0.72 * h, x + f * 0.36 * w + 0.14 * w, y - r)
            body = [("rect", (x - f * 0.14 * w - 0.36 * w, y - h, x - f * 0.14 * w + 0.36 * w, y - r), 0.45, c),
                    ("rect", cab, 0.72, c[::-1]),
                    ("rect", (cab[0] + 0.04 * w, cab[1] + 0.05 * h, cab[2] - 0.04 * w, cab[1] + 0.25 * h), 0.32, glass)]
        return [*body, ("circle", (x - 0.33 * w, y - r, r), 0.85, dark), ("circle", (x + 0.33 * w, y - r, r), 0.85, dark)]
    if obj.cls == "Motorcycle":
        r = 0.3 * h
        return [("circle", (x - w / 2 + r, y - r, r), 0.62, dark), ("circle", (x + w / 2 - r, y - r, r), 0.62, dark),
                ("poly", [(x - 0.25 * w, y - 0.75 * h), (x + 0.2 * w, y - 0.8 * h), (x + 0.25 * w, y - 0.35 * h),
                          (x - 0.15 * w, y - 0.35 * h)], 0.88, c),
                ("rect", (x + f * 0.3 * w - 0.03 * w, y - h, x + f * 0.3 * w + 0.03 * w, y - 0.7 * h), 0.6, dark)]
    # Lamp: a pole at the road side and an arm reaching over the road with the light at its end.
    pole = 0.16 * w
    base = x - f * (w / 2 - pole / 2)
    return [("rect", (base - pole / 2, y - h, base + pole / 2, y), 0.45, c),
            ("rect", (min(base, base + f * (w - pole)), y - h, max(base, base + f * (w - pole)), y - h + 0.04 * h), 0.45, c),
            ("rect", (x + f * w / 2 - f * 0.3 * w, y - h, x + f * w / 2, y - h + 0.08 * h), 0.93,
             np.array([0.95, 0.92, 0.75]))]


def _part_mask(shape: str, geometry, height: int, width: int) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    if shape == "rect":
        x1, y1, x2, y2 = geometry
        x1, y1, x2, y2 = int(round(min(x1, x2))), int(round(y1)), int(round(max(x1, x2))), int(round(y2))
        cv2.rectangle(mask, (x1, y1), (max(x1, x2 - 1), max(y1, y2 - 1)), 1, -1, cv2.LINE_8)
    elif shape == "circle":
        cx, cy, r = geometry
        cv2.circle(mask, (int(round(cx)), int(round(cy))), max(1, int(round(r))), 1, -1, cv2.LINE_8)
    else:
        cv2.fillPoly(mask, [np.round(np.array(geometry)).astype(np.int32)], 1, cv2.LINE_8)
    return mask.astype(bool)


# --- frames -------------------------------------------------------------------------------------

def _render(scene: _Scene, frame: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list, np.ndarray]:
    """One frame: objects over the background, then the condition, then sensor noise; and its mask."""
    ir, vi, boxes, shown, labels = _draw_objects(scene, frame)
    ir, vi = _apply_condition(scene, ir, vi, shown)
    noise = 0.03 if scene.condition == "night" else 0.01
    vi = vi + rng.normal(0, noise, vi.shape).astype(np.float32)
    ir = cv2.GaussianBlur(ir, (3, 3), 0.7) + rng.normal(0, 0.01, ir.shape).astype(np.float32)
    to_u8 = lambda a: (np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)
    return to_u8(ir), to_u8(vi), boxes, labels


def _draw_objects(scene: _Scene, frame: int) -> tuple[np.ndarray, np.ndarray, list, list, np.ndarray]:
    """Objects over the background; each box is the extent of the object's drawn pixels, which the mask
    labels with the object's class."""
    ir, vi, labels = scene.ir.copy(), scene.vi.copy(), scene.labels.copy()
    height, width = ir.shape
    boxes, shown = [], []
    for obj in scene.objects:
        x = obj.x + obj.speed * frame
        union = np.zeros((height, width), bool)
        for shape, geometry, warmth, colour in _parts(obj, x):
            mask = _part_mask(shape, geometry, height, width)
            ir_alpha = 0.1 if obj.hidden_in == "ir" else 1.0
            vi_alpha = 0.12 if obj.hidden_in == "vi" else 1.0
            texture = 1 + 0.18 * scene.texture[mask][:, None]
            ir[mask] = ir_alpha * (warmth + 0.03 * scene.texture[mask]) + (1 - ir_alpha) * ir[mask]
            vi[mask] = vi_alpha * np.clip(colour * texture, 0, 1) + (1 - vi_alpha) * vi[mask]
            union |= mask
        labels[union] = SEGMENTATION_CLASSES.index(obj.cls)
        rows, cols = np.nonzero(union)
        if rows.size:
            boxes.append((obj.cls, [int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1],
                          obj.hidden_in))
            shown.append((obj, x))
    return ir, vi, boxes, shown, labels


def _apply_condition(scene: _Scene, ir: np.ndarray, vi: np.ndarray,
                     objects: list) -> tuple[np.ndarray, np.ndarray]:
    """The scene's condition; it degrades the visible image and leaves infrared almost untouched."""
    height, width = ir.shape
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    if scene.condition == "night":
        glow = np.zeros((height, width), np.float32)
        for obj, x in objects:
            h, w = SHAPES[obj.cls][0] * obj.person, SHAPES[obj.cls][1] * obj.person
            if obj.cls == "Lamp":
                spots = [(x + obj.facing * 0.35 * w, obj.ground - 0.92 * h, 0.5 * w + 2)]
            elif obj.cls in ("Car", "Bus", "Truck"):
                spots = [(x + obj.facing * w / 2, obj.ground - 0.35 * h, 0.12 * w + 1)]
            else:
                continue
            for sx, sy, radius in spots:
                glow += np.exp(-((xs - sx) ** 2 + (ys - sy) ** 2) / (2 * radius ** 2))
        return ir, vi * 0.12 + np.array([0.0, 0.01, 0.04]) + glow[..., None] * np.array([1.0, 0.9, 0.6])
    if scene.condition == "fog":
        depth = np.clip((ys - scene.horizon) / (height - scene.horizon), 0, 1)
        fog = scene.strength * (0.95 - 0.4 * depth)[..., None]
        return 0.85 * ir + 0.15 * ir.mean(), vi * (1 - fog) + fog * np.array([0.78, 0.8, 0.82])
    if scene.condition == "smoke":
        cx, cy = scene.light
        cloud = np.exp(-((xs - cx) ** 2 / (2 * (0.22 * width) ** 2) + (ys - cy) ** 2 / (2 * (0.3 * height) ** 2)))
        cloud = np.clip(cloud * (1.3 + 0.4 * scene.texture), 0, 0.92)[..., None]
        return ir * (1 - 0.1 * cloud[..., 0]) + 0.03 * cloud[..., 0], vi * (1 - cloud) + cloud * np.array([0.62, 0.6, 0.58])
    if scene.condition == "glare":
        cx, cy = scene.light
        radius = 0.22 * width
        flare = 1.6 * np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * radius ** 2))
        streak = 0.5 * np.exp(-((ys - cy) ** 2) / (2 * (0.02 * height) ** 2))
        return ir, vi + (flare + streak)[..., None] * np.array([1.0, 0.97, 0.85])
    return ir, vi


def _voc_xml(stem: str, width: int, height: int, boxes: list) -> str:
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = f"{stem}.png"
    size = ET.SubElement(root, "size")
    for key, value in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, key).text = str(value)
    for cls, (x1, y1, x2, y2), _hidden in boxes:
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = cls
        ET.SubElement(obj, "difficult").text = "0"
        box = ET.SubElement(obj, "bndbox")
        for key, value in (("xmin", x1 + 1), ("ymin", y1 + 1), ("xmax", x2), ("ymax", y2)):   # VOC: 1-based, inclusive
            ET.SubElement(box, key).text = str(value)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"
