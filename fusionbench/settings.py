"""The base of every typed settings section (the config's own and each downstream task's).

Neutral, so a task module (``detection/``, ``segmentation/``, a test's toy task) declares its section
with the same rules as the config schema: unknown keys are errors, values are checked on assignment.
"""
from __future__ import annotations

from typing import Annotated

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
