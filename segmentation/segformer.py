"""The segmenter: SegFormer (a Mix Transformer encoder and an all-MLP decoder), built offline.

SegFormer-B0 is the field's de-facto segmenter for comparing fusion methods (``../shared/TASKS.md``).
It comes from ``segmentation-models-pytorch`` (smp), chosen over ``transformers``' SegFormer because:
- **size**: smp and timm are ~3 MB of wheels; transformers, tokenizers and regex ~17 MB (both need
  huggingface-hub and safetensors);
- **offline**: with ``encoder_weights=None`` smp builds the network from its own architecture table and
  reaches no network; pre-trained weights are only ever read here, from a local path;
- **the protocol's weights**: smp's MiT encoder keeps NVIDIA's parameter names, so the ImageNet MiT-B0
  backbone that SegFormer training starts from (NVIDIA's ``mit_b0.pth``, as the bubbliiiing script uses
  it) loads as a plain state dict, and so does a whole model saved by smp or by this project;
- **maintained**: released through 2026, pinned here (the numbers move with its version).
smp's decoder is SegFormer's (one linear layer per stage, 1x1 fusion with batch norm, 1x1 classifier)
without the dropout before the classifier; its logits are upsampled to the input size.

Weights files are read with ``weights_only=True`` (or as safetensors): never unpickled code.
"""
from __future__ import annotations

import logging
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import segmentation_models_pytorch as smp
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from segmentation.settings import SegmenterError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Architecture:
    """A SegFormer size: smp's name of its Mix Transformer encoder and the decoder's channel count."""

    encoder: str
    decoder_channels: int


ARCHITECTURES = {"segformer_b0": Architecture("mit_b0", 256)}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.pth")  # looked for in a weights folder
# Whole SegFormers as NVIDIA released them (mmsegmentation's layout), which the bubbliiiing script keeps
# (its segformer_b0_weights_voc.pth is the protocol's usual start): their names -> smp's.
NVIDIA_LAYOUT = {"backbone.": "encoder.", "decode_head.linear_c4.proj.": "decoder.mlp_stage.0.linear.",
                 "decode_head.linear_c3.proj.": "decoder.mlp_stage.1.linear.",
                 "decode_head.linear_c2.proj.": "decoder.mlp_stage.2.linear.",
                 "decode_head.linear_c1.proj.": "decoder.mlp_stage.3.linear.",
                 "decode_head.linear_fuse.conv.": "decoder.fuse_stage.0.",
                 "decode_head.linear_fuse.bn.": "decoder.fuse_stage.1.",
                 "decode_head.linear_pred.": "segmentation_head.0."}


def build(model: str, n_classes: int, weights: str | os.PathLike | None = None,
          allow_random: bool = False) -> torch.nn.Module:
    """The named segmenter with ``n_classes`` outputs, started from local ``weights`` (see
    :func:`load_weights`), or from a random start only when ``allow_random`` (logged as a warning).
    The random initialisation (and the classifier's, when the weights lack it) follows torch's seed."""
    segmenter = network(model, n_classes)
    if weights is None and not allow_random:
        raise SegmenterError(f"no pre-trained weights for {model}: give a local weights file (for SegFormer, e.g. "
                             "NVIDIA's ImageNet mit_b0.pth), or allow a random start explicitly")
    if weights is None:
        log.warning("!" * 78)
        log.warning("NO PRE-TRAINED SEGMENTER WEIGHTS: training %s from a random start.", model)
        log.warning("mIoU will be far below published numbers, which start from ImageNet weights.")
        log.warning("!" * 78)
    else:
        load_weights(segmenter, weights)
    return segmenter


def network(model: str, n_classes: int) -> torch.nn.Module:
    """The named segmenter's network, randomly initialised (from torch's seed), nothing loaded."""
    if model not in ARCHITECTURES:
        raise SegmenterError(f"unknown segmenter {model!r}: known are {', '.join(sorted(ARCHITECTURES))}")
    size = ARCHITECTURES[model]
    return smp.Segformer(encoder_name=size.encoder, encoder_weights=None, classes=n_classes,
                         decoder_segmentation_channels=size.decoder_channels)


def load_weights(segmenter: torch.nn.Module, path: str | os.PathLike) -> None:
    """Load a local state dict into ``segmenter``: a whole segmenter's, in smp's names or in NVIDIA's
    (:data:`NVIDIA_LAYOUT`), its classifier skipped when the class count differs; or an encoder's alone
    (NVIDIA's MiT names, e.g. the ImageNet ``mit_b0.pth``; the decoder keeps its random start).

    ``path`` is a ``.safetensors``, ``.pth``/``.pt``/``.bin`` file, or a folder holding one of
    :data:`WEIGHT_FILES`. Checkpoints that wrap the state dict under ``state_dict`` or ``model`` are
    unwrapped; a ``module.`` prefix (DataParallel) is dropped.
    """
    path = weights_file(Path(path))
    state = _read_state(path)
    own = segmenter.state_dict()
    whole = {key.removeprefix("module."): value for key, value in state.items()}
    encoder = {f"encoder.{key}": value for key, value in whole.items()}
    nvidia = {_renamed(key): value for key, value in whole.items()}
    loaded = max((whole, encoder, nvidia), key=lambda candidate: len(candidate.keys() & own.keys()))
    fitting = {key: value for key, value in loaded.items() if key in own and value.shape == own[key].shape}
    missing = [key for key in own if key.startswith("encoder.") and key not in fitting]
    if missing:
        raise SegmenterError(f"{path}: not weights of this segmenter's encoder: {len(missing)} of its tensors are "
                             f"missing or of another shape (e.g. {missing[0]}); first keys of the file: "
                             f"{', '.join(list(state)[:3])}")
    skipped = sorted(own.keys() - fitting.keys())
    if skipped:
        log.info("%s: %d tensors start random (not in the file, or another class count): %s", path, len(skipped),
                 ", ".join(skipped[:4]) + (", ..." if len(skipped) > 4 else ""))
    segmenter.load_state_dict({**own, **fitting})


def _renamed(key: str) -> str:
    for theirs, ours in NVIDIA_LAYOUT.items():
        if key.startswith(theirs):
            return ours + key.removeprefix(theirs)
    return key


def weights_file(path: Path) -> Path:
    """The weights file itself: ``path``, or the first of :data:`WEIGHT_FILES` in the folder ``path``."""
    if path.is_dir():
        for name in WEIGHT_FILES:
            if (path / name).is_file():
                return path / name
        raise SegmenterError(f"{path}: a weights folder without any of {', '.join(WEIGHT_FILES)}")
    if not path.is_file():
        raise SegmenterError(f"{path}: pre-trained segmenter weights not found")
    return path


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError, SafetensorError) as error:
        raise SegmenterError(f"{path}: not a readable weights file ({str(error).splitlines()[0]})") from error
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise SegmenterError(f"{path}: holds no state dict of tensors")
    return state
