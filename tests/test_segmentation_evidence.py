"""The evidence of one (method, seed): from a trained segmenter's real predictions on test images,
confusion.npz, the predicted masks and results.json agree with each other and with an independent
pixel-by-pixel count, with bootstrap intervals reproducible from their seed."""
from __future__ import annotations

import json

import numpy as np
import pytest

from segmentation import confusion
from segmentation.confusion import ConfusionError
from segmentation.evidence import write_evidence
from segmentation.masks import read_mask
from segmentation.predict import predict
from segmentation.settings import SegmenterSettings
from segmentation.train import train_segmenter

CLASSES = ("background", "car", "road", "person", "bike")  # the labelled scenes' (conftest)


@pytest.fixture(scope="module")
def predicted(labelled_scenes, tiny_segformer, tmp_path_factory):
    """A tiny SegFormer trained on 8 scenes and its predictions on 4 unseen ones (the test set)."""
    settings = SegmenterSettings(model=tiny_segformer, epochs=3, imgsz=32, batch=4, lr=3e-3, eval_every=3,
                                 device="cpu", allow_random=True)
    result = train_segmenter(labelled_scenes[:8], labelled_scenes[8:12], CLASSES, settings,
                             tmp_path_factory.mktemp("segmenter"))
    test = labelled_scenes[12:]
    predictions = list(predict(result.best_weights, [image for image, _ in test], settings))
    return predictions, {image.stem: mask for image, mask in test}


def test_evidence_agrees_with_a_pixel_by_pixel_count(tmp_path, predicted, pixel_loop):
    predictions, masks = predicted
    results = write_evidence(predictions, masks, CLASSES, tmp_path / "confusion.npz", tmp_path / "masks",
                             tmp_path / "results.json", replicates=200, seed=3)
    assert json.loads((tmp_path / "results.json").read_text()) == results
    written = [read_mask(tmp_path / "masks" / f"{stem}.png", 5) for stem, _ in predictions]
    assert all(np.array_equal(w, p) for w, (_, p) in zip(written, predictions))
    truths = [read_mask(masks[stem], 5) for stem, _ in predictions]
    miou, accuracy, iou = pixel_loop(written, truths, 5)
    assert results["miou"] == pytest.approx(miou, abs=1e-12)
    assert results["pixel_accuracy"] == pytest.approx(accuracy, abs=1e-12)
    for name, value in zip(CLASSES, iou):
        assert (results["iou"][name]["value"] is None) if np.isnan(value) else \
            results["iou"][name]["value"] == pytest.approx(value, abs=1e-12)
    assert 0.2 < miou < 0.99 and len({int(v) for _, p in predictions for v in np.unique(p)}) >= 3  # not trivial
    low, high = results["miou_ci95"]
    assert low <= results["miou"] <= high and low < high
    assert results["images"] == 4 and results["bootstrap"]["seed"] == 3
    loaded = confusion.load(tmp_path / "confusion.npz")
    assert loaded.stems == tuple(masks) and loaded.classes == CLASSES
    assert loaded.matrices.sum() == sum(int((t != 255).sum()) for t in truths)


def test_intervals_follow_the_given_seed(tmp_path, predicted):
    predictions, masks = predicted
    def paths(name: str):
        return tmp_path / name / "c.npz", tmp_path / name / "m", tmp_path / name / "r.json"

    first = write_evidence(predictions, masks, CLASSES, *paths("a"), replicates=100, seed=1)
    again = write_evidence(predictions, masks, CLASSES, *paths("b"), replicates=100, seed=1)
    other = write_evidence(predictions, masks, CLASSES, *paths("c"), replicates=100, seed=2)
    assert first == again and first["miou"] == other["miou"] and first["miou_ci95"] != other["miou_ci95"]


def test_missing_or_foreign_predictions_are_named(tmp_path, predicted):
    predictions, masks = predicted
    with pytest.raises(ConfusionError, match=r"no prediction for 1 of 4 test images \(e\.g\. s15\)"):
        write_evidence(predictions[:3], masks, CLASSES, tmp_path / "c.npz", tmp_path / "m", tmp_path / "r.json",
                       replicates=10, seed=0)
    _, mask = predictions[0]
    with pytest.raises(ConfusionError, match="a prediction for other, which has no ground-truth mask"):
        write_evidence([("other", mask)], masks, CLASSES, tmp_path / "c.npz", tmp_path / "m", tmp_path / "r.json",
                       replicates=10, seed=0)
