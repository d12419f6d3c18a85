"""Foreign S4Fusion checkpoint layouts, converted for :func:`fusion.learned.checkpoint.load_model`.

- The authors' released ``model.pkl``: ``{"model": state_dict}`` with every key prefixed ``vmunet.``; it
  maps onto the released topology with default sizes after renaming the head (``final_up.`` -> ``head.``,
  ``final_conv.`` -> ``head.conv.``).
- This project's first format (``{"format": "fusionbench.s4fusion/1", "config", "state_dict", ...}``,
  written by the trainer before the learned-fuser framework): the same config and weights; the
  trainer's entries (optimizer, epoch, ...) stay in the payload.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from fusion.learned.architecture import Converter

PROJECT_V1 = "fusionbench.s4fusion/1"
RELEASED_PREFIX = "vmunet."
RELEASED_RENAMES = {"final_up.": "head.", "final_conv.": "head.conv."}


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


def _is_released(payload: dict[str, Any]) -> bool:
    state = payload.get("model")
    return isinstance(state, dict) and bool(state) and all(str(k).startswith(RELEASED_PREFIX) for k in state)


def _from_released(payload: dict[str, Any]) -> tuple[Mapping[str, Any], dict[str, torch.Tensor]]:
    return {}, convert_released(payload["model"])


def _from_project_v1(payload: dict[str, Any]) -> tuple[Mapping[str, Any], dict[str, torch.Tensor]]:
    return payload.get("config") or {}, payload.get("state_dict")


CONVERTERS = (
    Converter(f"the authors' model.pkl ({{'model': state_dict}} with keys starting {RELEASED_PREFIX!r})",
              _is_released, _from_released),
    Converter(f"a project checkpoint of format {PROJECT_V1!r}", lambda p: p.get("format") == PROJECT_V1,
              _from_project_v1),
)
