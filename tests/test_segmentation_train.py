"""The segmenter: built offline, weights only from local files, seeded training that resumes exactly
after a kill, predictions at each image's own size. A reduced SegFormer (a 4-stage Mix Transformer of
8..32 channels, registered for these tests only) on 32x32 scenes keeps it to seconds on a CPU."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from fusionbench.images import ImageError
from segmentation.inputs import LUMINANCE, channel_statistics, read_input
from segmentation.masks import MaskError
from segmentation.predict import predict
from segmentation.segformer import build, network
from segmentation.settings import SegmenterError, SegmenterSettings
from segmentation.train import train_segmenter

TINY = "segformer_tiny"
CLASSES = ("background", "car", "road", "person", "bike")  # the labelled scenes' (conftest)


@pytest.fixture(autouse=True)
def tiny(tiny_segformer):
    """Every test here may build ``segformer_tiny``."""


@pytest.fixture(scope="module")
def scenes(labelled_scenes):
    """8 scenes for training, 4 for validation."""
    return labelled_scenes[:8], labelled_scenes[8:12]


def settings(**changes) -> SegmenterSettings:
    return SegmenterSettings(**{"model": TINY, "epochs": 4, "imgsz": 32, "batch": 4, "lr": 3e-3, "eval_every": 2,
                                "device": "cpu", "allow_random": True, **changes})


def state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model"]


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_killed_training_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path, scenes, monkeypatch):
    train, val = scenes
    whole = train_segmenter(train, val, CLASSES, settings(), tmp_path / "whole")
    assert sorted(whole.val_miou) == [2, 4] and whole.best_epoch in (2, 4)
    assert whole.best_miou == max(whole.val_miou.values()) > 0.1  # it learned something

    steps = {"n": 0}
    original = torch.optim.AdamW.step

    def killed_in_epoch_three(self, *args, **kwargs):
        steps["n"] += 1
        if steps["n"] == 6:  # 2 steps per epoch: the second step of the third epoch
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", killed_in_epoch_three)
    with pytest.raises(KeyboardInterrupt):
        train_segmenter(train, val, CLASSES, settings(), tmp_path / "killed")
    assert torch.load(tmp_path / "killed" / "last.pt", weights_only=True)["epoch"] == 2
    steps["n"] = -100  # no second kill; count the steps the rerun takes
    resumed = train_segmenter(train, val, CLASSES, settings(), tmp_path / "killed")
    assert steps["n"] == -100 + 4  # epochs 3 and 4 only
    assert resumed.val_miou == whole.val_miou and resumed.best_epoch == whole.best_epoch
    assert same_weights(state(tmp_path / "killed" / "last.pt"), state(tmp_path / "whole" / "last.pt"))
    assert same_weights(state(tmp_path / "killed" / "best.pt"), state(tmp_path / "whole" / "best.pt"))
    assert not list((tmp_path / "killed").glob(".*.tmp"))  # atomic writes leave no temporary behind


def test_workers_change_nothing_another_seed_changes_the_weights_and_other_settings_do_not_resume(tmp_path, scenes):
    train, val = scenes
    train_segmenter(train, val, CLASSES, settings(epochs=1, eval_every=1), tmp_path / "a")
    train_segmenter(train, val, CLASSES, settings(epochs=1, eval_every=1, workers=2), tmp_path / "workers")
    train_segmenter(train, val, CLASSES, settings(epochs=1, eval_every=1, seed=1), tmp_path / "b")
    assert same_weights(state(tmp_path / "a" / "last.pt"), state(tmp_path / "workers" / "last.pt"))
    assert not same_weights(state(tmp_path / "a" / "last.pt"), state(tmp_path / "b" / "last.pt"))
    with pytest.raises(SegmenterError, match=r"a/last\.pt: written by a training run with other settings"):
        train_segmenter(train, val, CLASSES, settings(epochs=1, eval_every=1, lr=1e-2), tmp_path / "a")
    (tmp_path / "a" / "last.pt").write_bytes(b"cut")
    with pytest.raises(SegmenterError, match=r"a/last\.pt: damaged training checkpoint"):
        train_segmenter(train, val, CLASSES, settings(epochs=1, eval_every=1), tmp_path / "a")


def test_predictions_come_back_at_each_images_own_size(tmp_path, scenes, segmentation_scene):
    train, val = scenes
    result = train_segmenter(train, val, CLASSES, settings(epochs=1, eval_every=1), tmp_path / "run")
    image, _, _ = segmentation_scene(np.random.default_rng(1), 45, 70, len(CLASSES))
    Image.fromarray(image).save(tmp_path / "odd.png")
    images = [tmp_path / "odd.png", *(path for path, _ in val)]
    predicted = dict(predict(result.best_weights, images, settings(batch=3)))
    assert list(predicted) == ["odd", *(path.stem for path, _ in val)]
    assert predicted["odd"].shape == (45, 70) and predicted["odd"].dtype == np.uint8
    assert all(predicted[path.stem].shape == (32, 32) for path, _ in val)
    assert max(int(mask.max()) for mask in predicted.values()) < len(CLASSES)
    with pytest.raises(SegmenterError, match=r"absent\.pt: trained segmenter weights not found"):
        next(predict(tmp_path / "absent.pt", images, settings()))


def test_weights_come_only_from_local_files(tmp_path, caplog):
    with pytest.raises(SegmenterError, match=f"no pre-trained weights for {TINY}: give a local weights file"):
        build(TINY, 5)
    with caplog.at_level(logging.WARNING):
        build(TINY, 5, allow_random=True)
    assert "NO PRE-TRAINED SEGMENTER WEIGHTS" in caplog.text
    with pytest.raises(SegmenterError, match=r"absent\.pth: pre-trained segmenter weights not found"):
        build(TINY, 5, tmp_path / "absent.pth")
    with pytest.raises(SegmenterError, match="unknown segmenter 'segformer_b9'"):
        build("segformer_b9", 5, allow_random=True)


# NVIDIA's (mmsegmentation's) module names of a whole SegFormer, written out independently of the code
NVIDIA_NAMES = {"decoder.mlp_stage.0.linear": "decode_head.linear_c4.proj",
                "decoder.mlp_stage.1.linear": "decode_head.linear_c3.proj",
                "decoder.mlp_stage.2.linear": "decode_head.linear_c2.proj",
                "decoder.mlp_stage.3.linear": "decode_head.linear_c1.proj",
                "decoder.fuse_stage.0": "decode_head.linear_fuse.conv",
                "decoder.fuse_stage.1": "decode_head.linear_fuse.bn",
                "segmentation_head.0": "decode_head.linear_pred"}


def test_whole_and_encoder_only_state_dicts_load(tmp_path):
    """smp's names (a file, a folder), an encoder alone with ImageNet's classifier (NVIDIA's mit_b0.pth),
    and a whole SegFormer in NVIDIA's names (mmsegmentation's, the bubbliiiing script's VOC weights)."""
    torch.manual_seed(0)
    source = {key: value + torch.rand_like(value) if value.is_floating_point() else value  # no tensor as initialised
              for key, value in network(TINY, 9).state_dict().items()}  # e.g. trained on a 9-class data set
    save_file(source, tmp_path / "whole.safetensors")
    (tmp_path / "folder").mkdir()
    save_file(source, tmp_path / "folder" / "model.safetensors")
    encoder = {key.removeprefix("encoder."): value for key, value in source.items() if key.startswith("encoder.")}
    torch.save({"state_dict": {**encoder, "head.weight": torch.zeros(1000, 32)}}, tmp_path / "mit.pth")
    nvidia = {NVIDIA_NAMES.get(key.rsplit(".", 1)[0], key.rsplit(".", 1)[0]).replace("encoder.", "backbone.")
              + "." + key.rsplit(".", 1)[1]: value for key, value in source.items()}
    assert "decode_head.linear_c4.proj.weight" in nvidia and "backbone.block1.0.attn.q.weight" in nvidia
    torch.save({"meta": {}, "state_dict": nvidia}, tmp_path / "mmseg.pth")
    for weights in ("whole.safetensors", "folder", "mit.pth", "mmseg.pth"):
        torch.manual_seed(1)
        loaded = build(TINY, 5, tmp_path / weights).state_dict()
        assert all(torch.equal(loaded[key], source[key]) for key in source if key.startswith("encoder."))
        assert not torch.equal(loaded["segmentation_head.0.weight"][:1], source["segmentation_head.0.weight"][:1])
        for decoder in ("decoder.mlp_stage.0.linear.weight", "decoder.mlp_stage.3.linear.bias",
                        "decoder.fuse_stage.0.weight", "decoder.fuse_stage.1.running_var"):
            assert torch.equal(loaded[decoder], source[decoder]) == (weights != "mit.pth")


def test_foreign_or_unsafe_weight_files_are_refused(tmp_path):
    save_file({"backbone.conv.weight": torch.zeros(3)}, tmp_path / "other.safetensors")
    with pytest.raises(SegmenterError, match=r"other\.safetensors: not weights of this segmenter's encoder"):
        build(TINY, 5, tmp_path / "other.safetensors")
    torch.save({"model": Path("pickled code")}, tmp_path / "code.pt")  # an object, not tensors
    with pytest.raises(SegmenterError, match=r"code\.pt: not a readable weights file"):
        build(TINY, 5, tmp_path / "code.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SegmenterError, match=r"empty: a weights folder without any of model\.safetensors"):
        build(TINY, 5, tmp_path / "empty")


def test_per_method_normalisation_and_grey_inputs(tmp_path, scenes):
    train, val = scenes
    result = train_segmenter(train, val, CLASSES, settings(epochs=1, normalisation="per_method", colour="grey"),
                             tmp_path / "run")
    pixels = np.concatenate([np.asarray(Image.open(path), np.float64).reshape(-1, 3) / 255 for path, _ in train])
    luminance = pixels @ LUMINANCE.astype(np.float64)
    assert result.preprocessing.colour == "grey"
    assert np.allclose(result.preprocessing.mean, luminance.mean(), atol=1e-6)
    assert np.allclose(result.preprocessing.std, luminance.std(), atol=1e-6)
    grey = read_input(train[0][0], "grey")
    assert grey.shape == (32, 32, 3) and np.array_equal(grey[..., 0], grey[..., 2])
    mean, _ = channel_statistics([path for path, _ in train], "colour")
    assert np.allclose(mean, pixels.mean(axis=0), atol=1e-6)
    with pytest.raises(SegmenterError, match="normalisation 'fixed': expected one of imagenet, per_method"):
        settings(normalisation="fixed")


def test_the_default_is_segformer_b0_built_without_the_network(monkeypatch):
    """MiT-B0's stage widths, SegFormer-B0's 256-channel decoder and its ~3.7M parameters, built with
    every socket refused."""
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("the segmenter tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    model = network(SegmenterSettings().model, 9)
    assert model.encoder.out_channels == [3, 0, 32, 64, 160, 256]
    assert model.decoder.fuse_stage[0].out_channels == 256 and model.segmentation_head[0].out_channels == 9
    assert 3.6e6 < sum(p.numel() for p in model.parameters()) < 3.8e6


def test_bad_masks_and_images_are_named_before_training(tmp_path, scenes):
    train, val = scenes
    with pytest.raises(SegmenterError, match="0 training and 4 validation images"):
        train_segmenter([], val, CLASSES, settings(), tmp_path / "run")
    with pytest.raises(MaskError, match=r"s\d\d\.png: value 4 \(\d+ pixels with values 4\) is neither a class index "
                                        r"0\.\.3"):
        train_segmenter(train, val, CLASSES[:4], settings(), tmp_path / "run")
    with pytest.raises(ImageError, match=r"absent\.png: not a readable image"):
        train_segmenter([(tmp_path / "absent.png", train[0][1]), *train[1:]], val, CLASSES, settings(),
                        tmp_path / "run")
    assert not (tmp_path / "run").exists()
