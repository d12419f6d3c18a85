"""Shared test fixtures: the real MSRS pairs in ../shared (skipped cleanly when absent)."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

# No test may reach the network: ultralytics reads these before it is imported anywhere.
os.environ.setdefault("YOLO_OFFLINE", "1")
import fusion  # noqa: E402,F401 - its OpenMP waiting (see fusion/__init__.py) is set before torch loads

# The tests run the Triton selective scan on CPU tensors, in Triton's interpreter. Triton reads this
# when its language module and each kernel are defined, and torchvision imports triton: so here.
os.environ.setdefault("TRITON_INTERPRET", "1")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared is not present")
    return SHARED


@pytest.fixture(scope="session")
def shared_path(shared_dir: Path) -> Callable[[str], Path]:
    """``shared_path("data/x")``: that file or folder of ../shared, or the test is skipped cleanly."""
    def find(relative: str) -> Path:
        path = shared_dir / relative
        if not path.exists():
            pytest.skip(f"{path} is not present")
        return path
    return find


@pytest.fixture(scope="session")
def msrs_det20(shared_path: Callable[[str], Path]) -> Path:
    return shared_path("data/msrs_det20")


@pytest.fixture(scope="session")
def parity_fixture(shared_path: Callable[[str], Path]) -> Path:
    return shared_path("fixtures/s4fusion_released_parity.pt")


@pytest.fixture(scope="session")
def msrs_benchmark(msrs_det20: Path, tmp_path_factory: pytest.TempPathFactory):
    """The 20 real MSRS pairs prepared as a benchmark (msrs layout, seed 0, 14/2/4), built once."""
    from pipelines.prepare import prepare_benchmark

    return prepare_benchmark(msrs_det20, tmp_path_factory.mktemp("msrs") / "benchmark", layout="msrs")


@pytest.fixture(scope="session")
def sample_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic raw dataset in the M3FD layout: 24 pairs at 128x96, seed 0."""
    from pipelines.sample import make_sample

    return make_sample(tmp_path_factory.mktemp("sample") / "raw", pairs=24, width=128, height=96, seed=0)


@pytest.fixture(scope="session")
def sample_benchmark(sample_raw: Path, tmp_path_factory: pytest.TempPathFactory):
    """``sample_raw`` prepared as a benchmark (random split, seed 0: 17/2/5 pairs)."""
    from pipelines.prepare import prepare_benchmark

    return prepare_benchmark(sample_raw, tmp_path_factory.mktemp("sample") / "benchmark")


def _segmentation_scene(rng, height: int = 48, width: int = 64, n_classes: int = 9, ignore: bool = True):
    """A street-like labelled scene: (RGB image uint8, ground-truth class indices, a plausible prediction).

    Ground truth: class 0 above a horizon, class ``n_classes // 2`` (a road) below it, 2-5 rectangular
    objects of other classes, sometimes an ignored (255) region. The image colours each class (plus
    noise), so a small segmenter can learn it. The prediction has what real ones have: boundaries off
    by a pixel, an object given the wrong class, a missed object, a spurious blob.
    """
    truth = np.zeros((height, width), np.uint8)
    horizon = int(rng.integers(height // 3, 2 * height // 3))
    truth[horizon:] = n_classes // 2
    boxes = []
    for _ in range(int(rng.integers(2, 6))):
        h, w = int(rng.integers(3, height // 2)), int(rng.integers(3, width // 3))
        y, x = int(rng.integers(0, height - h)), int(rng.integers(0, width - w))
        klass = int(rng.choice([c for c in range(1, n_classes) if c != n_classes // 2]))
        truth[y:y + h, x:x + w] = klass
        boxes.append((y, x, h, w, klass))
    prediction = np.roll(truth, (int(rng.integers(-1, 2)), int(rng.integers(-1, 2))), axis=(0, 1))
    y, x, h, w, klass = boxes[0]
    if rng.random() < 0.4:
        prediction[y:y + h, x:x + w] = (klass % (n_classes - 1)) + 1  # the wrong class
    elif rng.random() < 0.4:
        prediction[y:y + h, x:x + w] = truth[max(y - 1, 0), x]  # missed: the surroundings' class
    if rng.random() < 0.4:
        sy, sx = int(rng.integers(0, height - 4)), int(rng.integers(0, width - 4))
        prediction[sy:sy + 4, sx:sx + 4] = int(rng.integers(0, n_classes))
    if ignore and rng.random() < 0.3:
        truth[:3, : width // 4] = 255
    colours = np.random.default_rng(n_classes).integers(0, 256, size=(256, 3))
    image = colours[truth] + rng.normal(0, 12, size=(height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8), truth, prediction


@pytest.fixture(scope="session")
def segmentation_scene():
    """``segmentation_scene(rng, height, width, n_classes)``: see :func:`_segmentation_scene`."""
    return _segmentation_scene


def _pixel_loop(predictions, truths, n_classes: int, ignore: int = 255) -> tuple[float, float, list[float]]:
    """(mIoU, pixel accuracy, IoU per class) counted pixel by pixel in plain Python: TP, FP and FN per
    class over the whole set; a class with none of them has no IoU and is left out of the mean."""
    tp, fp, fn = [0] * n_classes, [0] * n_classes, [0] * n_classes
    right = counted = 0
    for prediction, truth in zip(predictions, truths):
        for p, t in zip(prediction.ravel().tolist(), truth.ravel().tolist()):
            if t == ignore:
                continue
            counted += 1
            if p == t:
                tp[t] += 1
                right += 1
            else:
                fp[p] += 1
                fn[t] += 1
    iou = [tp[c] / (tp[c] + fp[c] + fn[c]) if tp[c] + fp[c] + fn[c] else math.nan
           for c in range(n_classes)]
    defined = [v for v in iou if not math.isnan(v)]
    return sum(defined) / len(defined), right / counted, iou


@pytest.fixture(scope="session")
def pixel_loop():
    """``pixel_loop(predictions, truths, n_classes)``: see :func:`_pixel_loop`."""
    return _pixel_loop


@pytest.fixture(scope="module")
def tiny_segformer():
    """SegFormer's architecture at toy size (a 4-stage Mix Transformer of 8..32 channels, a 16-channel
    decoder), registered as ``segformer_tiny`` for one test module; drop-path kept, so the random-number
    state matters for resuming."""
    from segmentation_models_pytorch import encoders
    from segmentation_models_pytorch.encoders.mix_transformer import MixVisionTransformerEncoder

    from segmentation.segformer import ARCHITECTURES, Architecture

    params = {**encoders.encoders["mit_b0"]["params"], "embed_dims": [8, 16, 24, 32],
              "out_channels": [3, 0, 8, 16, 24, 32], "num_heads": [1, 1, 2, 2], "depths": [1, 1, 1, 1]}
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(encoders.encoders, "mit_tiny",
                      {"encoder": MixVisionTransformerEncoder, "pretrained_settings": {}, "params": params})
        patch.setitem(ARCHITECTURES, "segformer_tiny", Architecture("mit_tiny", 16))
        yield "segformer_tiny"


@pytest.fixture(scope="session")
def labelled_scenes(tmp_path_factory, segmentation_scene) -> list[tuple[Path, Path]]:
    """16 labelled 32x32 scenes of 5 classes (background, car, road, person, bike): (RGB PNG, index PNG)
    pairs, every third with an ignored region."""
    from PIL import Image

    from segmentation.masks import generated_palette, write_index_png

    folder = tmp_path_factory.mktemp("scenes")
    rng = np.random.default_rng(0)
    pairs = []
    for i in range(16):
        image, truth, _ = segmentation_scene(rng, 32, 32, 5, ignore=i % 3 == 0)
        Image.fromarray(image).save(folder / f"s{i:02d}.png")
        write_index_png(folder / "masks" / f"s{i:02d}.png", truth, generated_palette(5))
        pairs.append((folder / f"s{i:02d}.png", folder / "masks" / f"s{i:02d}.png"))
    return pairs


@pytest.fixture(scope="session")
def slurm() -> str:
    """A running SLURM that this machine submits to (``scripts/slurm_local.sh up``, as ``.ci/run`` does).
    Under CI=true its absence fails the run: the SLURM tests are the executor's only real test."""
    import shutil
    import subprocess

    problem = None
    if shutil.which("sbatch") is None:
        problem = "sbatch not found (apt-get install slurmctld slurmd slurm-client munge; scripts/slurm_local.sh up)"
    else:
        probe = subprocess.run(["sinfo", "-h", "-o", "%t %G"], capture_output=True, text=True, timeout=30)
        if probe.returncode or not probe.stdout.strip():
            problem = f"no SLURM answers (scripts/slurm_local.sh up): {probe.stderr.strip() or 'sinfo: no nodes'}"
        elif "gpu" not in probe.stdout:
            problem = f"the SLURM here has no GPUs (real or fake) in its nodes: {probe.stdout.strip()}"
    if problem and os.environ.get("CI") == "true":
        pytest.fail(f"CI=true needs a SLURM to test against: {problem}")
    if problem:
        pytest.skip(problem)
    return os.environ.get("SLURM_CONF", "")
