"""The base of every typed settings section (the config's own and each downstream task's).

Neutral, so a task module (``detection/``, ``segmentation/``, a test's toy task) declares its section
with the same rules as the config schema: unknown keys are errors, values are checked on assignment.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Sequence

from pydantic import BaseModel, ConfigDict, Field

# Seeds seed NumPy's and torch's generators, which take [0, 2**32).
SEED_LIMIT = 2**32
Seed = Annotated[int, Field(ge=0, lt=SEED_LIMIT)]


class Section(BaseModel):
    """A config section: unknown keys are errors, values are checked on assignment too; NaN and infinities
    are refused in every number (they pass ``ge``/``le`` bounds and crash or poison a stage later)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


def check_seeds(value: list[int]) -> list[int]:
    """A task's seed list: distinct seeds in [0, 2**32)."""
    if len(set(value)) != len(value) or not all(0 <= seed < SEED_LIMIT for seed in value):
        raise ValueError("distinct seeds in [0, 2**32), e.g. [0, 1, 2]")
    return value


def weights_for(weights: Path | dict[str, Path] | None, model: str) -> Path | None:
    """The pre-trained weights a task's ``weights`` setting gives ``model``: a plain path is every listed
    model's (:func:`check_weights` allows it for one listed model only), a mapping gives each its own."""
    if isinstance(weights, dict):
        return weights.get(model)
    return weights


def check_weights(weights: Path | dict[str, Path] | None, models: Sequence[str], kind: str) -> None:
    """A plain weights path cannot serve two models (``kind``: "detector", "segmenter"); a mapping names only
    listed ones."""
    if weights is None:
        return
    if not isinstance(weights, dict):
        if len(models) > 1:
            raise ValueError(f"weights is one file but {len(models)} {kind}s are listed ({', '.join(models)}): "
                             f"give {{model: path}} per {kind}")
        return
    unknown = sorted(set(weights) - set(models))
    if unknown:
        raise ValueError(f"weights for {', '.join(unknown)}: not a listed {kind} ({', '.join(models)})")
