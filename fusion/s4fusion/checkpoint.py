"""S4Fusion checkpoints: the project's own format and the authors' released ``model.pkl``.

Project format (a torch pickle of plain types): ``{"format": FORMAT, "config": S4FusionConfig dict,
"state_dict": ..., **extra}`` where extra holds whatever the caller adds (optimizer, epoch, ...), so
the file alone rebuilds the model. Released format: ``{"model": state_dict}`` with every key
prefixed ``vmunet.``; it maps onto the released topology with default sizes after renaming
the head (``final_up.`` -> ``head.``, ``final_conv.`` -> ``head.conv.``).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import torch

from fusion.s4fusion.config import S4FusionConfig
from fusion.s4fusion.model import S4Fusion
from fusionbench.errors import FusionBenchError
from fusionbench.files import atomic_write_bytes

FORMAT = "fusionbench.s4fusion/1"
RELEASED_PREFIX = "vmunet."
RELEASED_RENAMES = {"final_up.": "head.", "final_conv.": "head.conv."}
_LISTED = 12  # keys shown per category in error messages


class CheckpointError(FusionBenchError):
    """A checkpoint file that cannot be turned into an S4Fusion model."""


def save_checkpoint(path: str | os.PathLike, model: S4Fusion, **extra: Any) -> None:
    """Write model config + weights (+ ``extra``, e.g. optimizer=..., epoch=...) atomically."""
    reserved = {"format", "config", "state_dict"} & set(extra)
    if reserved:
        raise ValueError(f"extra checkpoint entries may not be named {sorted(reserved)}")
    payload = {"format": FORMAT, "config": model.config.to_dict(), "state_dict": model.state_dict(), **extra}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[S4Fusion, dict]:
    """Rebuild the model from a project checkpoint or the authors' model.pkl; also return the raw payload
    (for the trainer's optimizer/epoch). The model is returned in eval mode."""
    path = Path(path)
    payload = _read(path, map_location)
    if payload.get("format") == FORMAT:
        try:
            config = S4FusionConfig.from_dict(payload["config"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: bad S4Fusion config in checkpoint: {exc}") from exc
        state = payload.get("state_dict")
    elif _is_released(payload):
        config, state = S4FusionConfig(), convert_released(payload["model"])
    else:
        keys = sorted(payload)[:_LISTED]
        raise CheckpointError(
            f"{path}: not an S4Fusion checkpoint: expected a project checkpoint (format {FORMAT!r}) or the "
            f"authors' model.pkl ({{'model': state_dict}} with keys starting {RELEASED_PREFIX!r}); top-level keys: {keys}"
        )
    model = S4Fusion(config)
    load_state_checked(model, state, path)
    return model.to(map_location).eval(), payload


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> S4Fusion:
    """The model stored in ``path`` (project checkpoint or the authors' model.pkl), in eval mode."""
    return load_checkpoint(path, map_location)[0]


def checkpoint_identity(path: str | os.PathLike) -> str:
    """sha256 of what a checkpoint makes the model compute: its architecture config and every weight
    tensor (name, dtype, shape, values). Optimizer state, epoch, timings and pickling details are left
    out, so two identical trainings, or best.pt and last.pt of the same epoch, have one identity."""
    path = Path(path)
    payload = _read(path, "cpu")
    if payload.get("format") == FORMAT:
        config, state = payload.get("config"), payload.get("state_dict")
    elif _is_released(payload):
        config, state = S4FusionConfig().to_dict(), convert_released(payload["model"])
    else:
        raise CheckpointError(f"{path}: not an S4Fusion checkpoint (format {FORMAT!r} or the authors' model.pkl)")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: the checkpoint holds no state dict")
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name} {tensor.dtype} {tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def convert_released(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Authors' state-dict keys -> this project's (strip ``vmunet.``, rename the head)."""
    converted = {}
    for key, value in state.items():
        key = key[len(RELEASED_PREFIX):] if key.startswith(RELEASED_PREFIX) else key
        for old, new in RELEASED_RENAMES.items():
            if key.startswith(old):
                key = new + key[len(old):]
        converted[key] = value
    return converted


def load_state_checked(model: torch.nn.Module, state: Any, path: str | os.PathLike) -> None:
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
        lines = [f"{path}: weights do not fit the S4Fusion model ({model.config.topology} topology, "
                 f"fusion block {model.config.fusion_block!r})"]
        for title, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mis_shaped)):
            if keys:
                more = f" ... and {len(keys) - _LISTED} more" if len(keys) > _LISTED else ""
                lines.append(f"  {title} ({len(keys)}): {', '.join(keys[:_LISTED])}{more}")
        raise CheckpointError("\n".join(lines))
    model.load_state_dict(state)


def _read(path: Path, map_location: str | torch.device) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"S4Fusion checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged or foreign file
        raise CheckpointError(f"{path}: cannot be read as a torch checkpoint: {exc}") from exc
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: expected a dict in the checkpoint, found {type(payload).__name__}")
    return payload


def _is_released(payload: dict) -> bool:
    state = payload.get("model")
    return isinstance(state, dict) and bool(state) and all(str(k).startswith(RELEASED_PREFIX) for k in state)
