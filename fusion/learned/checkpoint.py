"""Learned-fuser checkpoints: ``{format, arch, config, state_dict, **extra}`` in one torch file.

The file alone rebuilds the model (:func:`load_model`): ``arch`` names the registered architecture,
``config`` its architecture arguments. ``extra`` holds whatever the writer adds (the trainer: optimizer,
scheduler, RNG states, epoch, ...). Files in another layout (the authors' releases, an older project
format) are read through the architectures' :class:`~fusion.learned.architecture.Converter` entries.
Files are read with ``weights_only=True``: only plain types and tensors.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fusion.learned.architecture import (
    Architecture,
    Converter,
    OptionsError,
    architectures,
    config_dict,
    get_architecture,
)
from fusion.registry import FuserError
from fusionbench.errors import FusionBenchError
from fusionbench.files import atomic_write_bytes
from fusionbench.unpickling import refusal_message, refused_global

FORMAT = "fusionbench.learned/1"
RESERVED = ("format", "arch", "config", "state_dict")
_LISTED = 12  # keys shown per category in error messages


class CheckpointError(FuserError):
    """A file that cannot be turned into a learned fuser's model."""


class CheckpointNotFoundError(FuserError, FileNotFoundError):
    """A checkpoint path with no file."""


def save_checkpoint(path: str | os.PathLike, arch: Architecture, config: Any, model: nn.Module, **extra: Any) -> None:
    """Write architecture name, config and weights (+ ``extra``) atomically."""
    reserved = set(RESERVED) & set(extra)
    if reserved:
        raise ValueError(f"extra checkpoint entries may not be named {sorted(reserved)}")
    payload = {"format": FORMAT, "arch": arch.name, "config": config_dict(config), "state_dict": model.state_dict(), **extra}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu"
                    ) -> tuple[nn.Module, Any, Architecture, dict[str, Any]]:
    """(model in eval mode, its config, its architecture, the raw payload) from a project checkpoint or
    any layout a registered converter reads."""
    path = Path(path)
    payload = read_payload(path, map_location)
    arch, config, state = _decode(path, payload)
    model = arch.build(config)
    load_state_checked(model, state, path, f"the {arch.name} model")
    return model.to(map_location).eval(), config, arch, payload


def checkpoint_identity(path: str | os.PathLike) -> str:
    """sha256 of what a checkpoint makes the model compute: its architecture, its config and every weight
    tensor (name, dtype, shape, values). Optimizer state, epoch, timings and pickling details are left
    out, so two identical trainings, or best.pt and last.pt of the same epoch, have one identity."""
    path = Path(path)
    arch, config, state = _decode(path, read_payload(path))
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: the checkpoint holds no state dict")
    digest = hashlib.sha256(json.dumps({"arch": arch.name, "config": config_dict(config)}, sort_keys=True,
                                       default=str).encode())
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name} {tensor.dtype} {tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> nn.Module:
    """The model stored in ``path``, in eval mode."""
    return load_checkpoint(path, map_location)[0]


def load_state_checked(model: nn.Module, state: Any, path: str | os.PathLike, what: str = "the model") -> None:
    """``load_state_dict`` with one error naming the file and listing missing, unexpected and mis-shaped keys."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: the checkpoint holds no state dict")
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mis_shaped = sorted(
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if not isinstance(state[k], torch.Tensor) or state[k].shape != own[k].shape
    )
    if missing or unexpected or mis_shaped:
        lines = [f"{path}: weights do not fit {what}"]
        for title, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mis_shaped)):
            if keys:
                more = f" ... and {len(keys) - _LISTED} more" if len(keys) > _LISTED else ""
                lines.append(f"  {title} ({len(keys)}): {', '.join(keys[:_LISTED])}{more}")
        raise CheckpointError("\n".join(lines))
    model.load_state_dict(state)


def read_payload(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The file's top-level dict (plain types and tensors only)."""
    if not path.is_file():
        raise CheckpointNotFoundError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged, foreign or unsafe file
        name = refused_global(exc)
        raise CheckpointError(refusal_message(path, name) if name else
                              f"{path}: cannot be read as a torch checkpoint: {exc}") from exc
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: expected a dict in the checkpoint, found {type(payload).__name__}")
    return payload


def _decode(path: Path, payload: dict[str, Any]) -> tuple[Architecture, Any, Any]:
    """(architecture, config, state dict) of a project checkpoint or a layout a converter reads."""
    if payload.get("format") == FORMAT:
        arch = _architecture(path, payload.get("arch"))
        config_map, state = payload.get("config"), payload.get("state_dict")
    else:
        arch, converter = _find_converter(path, payload)
        try:
            config_map, state = converter.convert(payload)
        except FusionBenchError as error:  # the converter knows the layout, the file name is known here
            raise CheckpointError(f"{path}: {error}") from error
    try:
        return arch, arch.make_config(config_map), state
    except OptionsError as error:
        raise CheckpointError(f"{path}: bad {arch.name} config in the checkpoint: {error}") from error


def _architecture(path: Path, name: Any) -> Architecture:
    try:
        return get_architecture(str(name))
    except KeyError as error:
        raise CheckpointError(f"{path}: {error}") from error


def _find_converter(path: Path, payload: dict[str, Any]) -> tuple[Architecture, Converter]:
    registered = architectures()
    for arch in registered.values():
        for converter in arch.converters:
            if converter.matches(payload):
                return arch, converter
    known = [f"{arch.name}: {c.description}" for arch in registered.values() for c in arch.converters]
    raise CheckpointError(
        f"{path}: not a learned-fuser checkpoint: expected a project checkpoint (format {FORMAT!r}) or one of "
        f"[{'; '.join(known)}]; top-level keys: {sorted(map(str, payload))[:_LISTED]}")
